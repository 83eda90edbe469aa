package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client speaks the scheduler's HTTP API. Token, if set, is sent as a
// bearer token: an agent's own token, or a user's for mutations.
type Client struct {
	Base string
	// Servers, if set, replaces Base with several servers sharing one
	// database, failed over between (see Servers).
	Servers *Servers
	Token   string
	HTTP    *http.Client
}

// StatusError is a reply with an unexpected HTTP status.
type StatusError struct {
	Method, Path string
	Code         int
	Message      string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.Code, http.StatusText(e.Code), e.Message)
}

// IsStatus reports whether err is a StatusError with the given code.
func IsStatus(err error, code int) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == code
}

func (c *Client) http() *http.Client {
	hc := http.DefaultClient
	if c.HTTP != nil {
		hc = c.HTTP
	}
	if hc.CheckRedirect != nil {
		return hc
	}
	cp := *hc
	cp.CheckRedirect = keepTokenHome
	return &cp
}

// keepTokenHome follows redirects (at most 10) but sends the token only to
// the server's own origin: an artifact download redirects to a presigned
// S3 URL, which needs no token and refuses a request with two kinds of
// authentication, and Go keeps the header for another port of the same
// host.
func keepTokenHome(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if req.URL.Scheme != via[0].URL.Scheme || req.URL.Host != via[0].URL.Host {
		req.Header.Del("Authorization")
	}
	return nil
}

// do sends a request with body (JSON-encoded unless it is an io.Reader)
// and decodes a JSON reply into out, if out is not nil. It returns the
// status code; 204 and a nil out skip the decoding.
func (c *Client) do(ctx context.Context, method, path string, body, out any) (int, error) {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return resp.StatusCode, statusError(method, path, resp)
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode reply: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func (c *Client) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var r io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case io.Reader:
		r, ctype = b, "application/octet-stream"
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		r, ctype = bytes.NewReader(data), "application/json"
	}
	return c.roundTrip(ctx, method, path, r, ctype, -1)
}

func statusError(method, path string, resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := strings.TrimSpace(string(data))
	var e Error
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	return &StatusError{Method: method, Path: path, Code: resp.StatusCode, Message: msg}
}

func attemptPath(a Attempt) string {
	return fmt.Sprintf("/api/v1/jobs/%d/attempts/%d", a.Job, a.Attempt)
}

// Register joins the pool with the pool's registration token (not c.Token).
func (c *Client) Register(ctx context.Context, poolToken string, req RegisterRequest) (*Registration, error) {
	rc := *c
	rc.Token = poolToken
	var reg Registration
	_, err := rc.do(ctx, http.MethodPost, "/api/v1/agents", req, &reg)
	return &reg, err
}

// Lease waits up to wait for a job for agent id. It returns nil and no
// error when none came.
func (c *Client) Lease(ctx context.Context, id string, wait time.Duration) (*Lease, error) {
	var l Lease
	code, err := c.do(ctx, http.MethodPost, "/api/v1/agents/"+url.PathEscape(id)+"/lease?wait="+wait.String(), nil, &l)
	if err != nil || code == http.StatusNoContent {
		return nil, err
	}
	return &l, nil
}

// Heartbeat renews the leases of the attempts the agent runs.
func (c *Client) Heartbeat(ctx context.Context, id string, hb Heartbeat) (*HeartbeatReply, error) {
	var r HeartbeatReply
	_, err := c.do(ctx, http.MethodPost, "/api/v1/agents/"+url.PathEscape(id)+"/heartbeat", hb, &r)
	return &r, err
}

// Deregister tells the scheduler the agent is leaving.
func (c *Client) Deregister(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/api/v1/agents/"+url.PathEscape(id), nil, nil)
	return err
}

// AppendLog uploads data as the attempt's log from byte offset on. The
// reply says how much of the log the scheduler holds; on a 409 (a gap
// before offset) it is returned with the error, so the caller resends
// from there.
func (c *Client) AppendLog(ctx context.Context, a Attempt, offset int64, data []byte) (LogAck, error) {
	path := attemptPath(a) + "/log?offset=" + strconv.FormatInt(offset, 10)
	resp, err := c.send(ctx, http.MethodPut, path, bytes.NewReader(data))
	if err != nil {
		return LogAck{}, err
	}
	defer resp.Body.Close()
	var ack LogAck
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusConflict {
		if err := json.NewDecoder(resp.Body).Decode(&ack); err != nil {
			return ack, fmt.Errorf("PUT %s: decode reply: %w", path, err)
		}
		if resp.StatusCode == http.StatusOK {
			return ack, nil
		}
		return ack, &StatusError{Method: http.MethodPut, Path: path, Code: resp.StatusCode, Message: fmt.Sprintf("log holds %d bytes", ack.Size)}
	}
	return ack, statusError(http.MethodPut, path, resp)
}

// Step reports a step's state.
func (c *Client) Step(ctx context.Context, a Attempt, s Step) error {
	_, err := c.do(ctx, http.MethodPost, attemptPath(a)+"/steps", s, nil)
	return err
}

// Finish closes an attempt with its result.
func (c *Client) Finish(ctx context.Context, a Attempt, r Result) error {
	_, err := c.do(ctx, http.MethodPost, attemptPath(a)+"/finish", r, nil)
	return err
}

// PutArtifact uploads one artifact file of an attempt.
func (c *Client) PutArtifact(ctx context.Context, a Attempt, path string, r io.Reader, size int64) error {
	p := attemptPath(a) + "/artifacts/" + escapePath(path)
	resp, err := c.roundTrip(ctx, http.MethodPut, p, r, "", size)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return statusError(http.MethodPut, p, resp)
	}
	return nil
}

// CommitArtifacts completes an attempt's artifacts with their manifest
// (an artifacts.Manifest in JSON).
func (c *Client) CommitArtifacts(ctx context.Context, a Attempt, manifest any) error {
	_, err := c.do(ctx, http.MethodPost, attemptPath(a)+"/artifacts", manifest, nil)
	return err
}

// AbortArtifacts drops what was uploaded of an attempt's artifacts.
func (c *Client) AbortArtifacts(ctx context.Context, a Attempt) error {
	_, err := c.do(ctx, http.MethodDelete, attemptPath(a)+"/artifacts", nil, nil)
	return err
}

// Manifest reads an attempt's artifact manifest into out.
func (c *Client) Manifest(ctx context.Context, a Attempt, out any) error {
	_, err := c.do(ctx, http.MethodGet, attemptPath(a)+"/artifacts", nil, out)
	return err
}

// OpenArtifact reads one artifact file of an attempt.
func (c *Client) OpenArtifact(ctx context.Context, a Attempt, path string) (io.ReadCloser, error) {
	return c.stream(ctx, attemptPath(a)+"/artifacts/"+escapePath(path))
}

// stream GETs path and returns the reply's body for the caller to read.
func (c *Client) stream(ctx context.Context, path string) (io.ReadCloser, error) {
	resp, err := c.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, statusError(http.MethodGet, path, resp)
	}
	return resp.Body, nil
}

func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// CreateRun queues a run of a job file.
func (c *Client) CreateRun(ctx context.Context, r NewRun) (*Run, error) {
	var run Run
	_, err := c.do(ctx, http.MethodPost, "/api/v1/runs", r, &run)
	return &run, err
}

// Run returns a run with its jobs.
func (c *Client) Run(ctx context.Context, id int64) (*Run, error) {
	var run Run
	_, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/runs/%d", id), nil, &run)
	return &run, err
}

// Runs lists runs, newest first, of repo (and branch) if set.
func (c *Client) Runs(ctx context.Context, repo, branch string) ([]Run, error) {
	var runs []Run
	q := url.Values{}
	if repo != "" {
		q.Set("repo", repo)
	}
	if branch != "" {
		q.Set("branch", branch)
	}
	_, err := c.do(ctx, http.MethodGet, "/api/v1/runs?"+q.Encode(), nil, &runs)
	return runs, err
}

// Job returns a job with its steps and result.
func (c *Client) Job(ctx context.Context, id int64) (*Job, error) {
	var j Job
	_, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d", id), nil, &j)
	return &j, err
}

// Agents lists the pool.
func (c *Client) Agents(ctx context.Context) ([]Agent, error) {
	var as []Agent
	_, err := c.do(ctx, http.MethodGet, "/api/v1/agents", nil, &as)
	return as, err
}

// Cancel cancels a job that has not ended.
func (c *Client) Cancel(ctx context.Context, id int64) error {
	_, err := c.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/jobs/%d/cancel", id), nil, nil)
	return err
}

// Retry queues an ended job again as a new attempt.
func (c *Client) Retry(ctx context.Context, id int64) error {
	_, err := c.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/jobs/%d/retry", id), nil, nil)
	return err
}

// Log reads a job's log (its latest attempt) as text; with follow, the
// reply streams until the job ends.
func (c *Client) Log(ctx context.Context, id int64, follow bool) (io.ReadCloser, error) {
	p := fmt.Sprintf("/api/v1/jobs/%d/log", id)
	if follow {
		p += "?follow=1"
	}
	return c.stream(ctx, p)
}

// SetSecret stores a repository's secret.
func (c *Client) SetSecret(ctx context.Context, repo, name string, s SetSecret) error {
	_, err := c.do(ctx, http.MethodPut, "/api/v1/secrets/"+url.PathEscape(name)+"?repo="+url.QueryEscape(repo), s, nil)
	return err
}

// Secrets lists a repository's secrets by name and branches, never their
// values.
func (c *Client) Secrets(ctx context.Context, repo string) ([]Secret, error) {
	var ss []Secret
	_, err := c.do(ctx, http.MethodGet, "/api/v1/secrets?repo="+url.QueryEscape(repo), nil, &ss)
	return ss, err
}
