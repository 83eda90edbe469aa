package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
)

// fakeScheduler speaks the scheduler's agent protocol (api's wire format,
// as scheduler/ serves it) over real HTTP, with failures injected per
// request: it tests the agent's own client logic, not the scheduler.
type fakeScheduler struct {
	t   *testing.T
	srv *httptest.Server

	poolToken, agentToken, agentID string
	leaseTimeout, heartbeat        time.Duration

	mu           sync.Mutex
	leases       []*api.Lease // handed out in order
	leasedAt     map[api.Attempt]time.Time
	logs         map[api.Attempt][]byte
	steps        map[api.Attempt][]api.Step
	results      map[api.Attempt]api.Result
	files        map[api.Attempt]map[string][]byte
	manifests    map[api.Attempt][]byte
	gone         map[api.Attempt]bool
	kill         []api.Attempt
	heartbeats   int
	deregistered bool
	// hold, if set, is called with each lease handed out, after the job
	// left the queue and before the reply: a test blocks there to keep a
	// lease's reply on its way.
	hold func(r *http.Request, l *api.Lease)
	// inject holds, per kind of request ("log", "step", "finish", "put",
	// "heartbeat", "manifest"), the actions for its next requests: "" is
	// normal, "500" fails before doing anything, "drop" does the request
	// and then cuts the connection before the reply, "hang" does it and
	// never replies, "410" answers Gone.
	inject map[string][]string
	events chan string
	seen   map[string]bool
}

func newFakeScheduler(t *testing.T) *fakeScheduler {
	f := &fakeScheduler{
		t: t, poolToken: "pool-secret", agentToken: "agent-secret", agentID: "a1",
		leaseTimeout: 3 * time.Second, heartbeat: time.Second,
		leasedAt: map[api.Attempt]time.Time{},
		logs:     map[api.Attempt][]byte{}, steps: map[api.Attempt][]api.Step{},
		results: map[api.Attempt]api.Result{}, files: map[api.Attempt]map[string][]byte{},
		manifests: map[api.Attempt][]byte{}, gone: map[api.Attempt]bool{},
		inject: map[string][]string{}, events: make(chan string, 100), seen: map[string]bool{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/agents", f.register)
	mux.HandleFunc("POST /api/v1/agents/{id}/lease", f.agent(f.lease))
	mux.HandleFunc("POST /api/v1/agents/{id}/heartbeat", f.agent(f.heartbeatH))
	mux.HandleFunc("DELETE /api/v1/agents/{id}", f.agent(f.deregister))
	mux.HandleFunc("PUT /api/v1/jobs/{id}/attempts/{n}/log", f.attempt("log", f.appendLog))
	mux.HandleFunc("POST /api/v1/jobs/{id}/attempts/{n}/steps", f.attempt("step", f.step))
	mux.HandleFunc("POST /api/v1/jobs/{id}/attempts/{n}/finish", f.attempt("finish", f.finish))
	mux.HandleFunc("PUT /api/v1/jobs/{id}/attempts/{n}/artifacts/{path...}", f.attempt("put", f.put))
	mux.HandleFunc("POST /api/v1/jobs/{id}/attempts/{n}/artifacts", f.attempt("commit", f.commit))
	mux.HandleFunc("DELETE /api/v1/jobs/{id}/attempts/{n}/artifacts", f.attempt("abort", f.abort))
	mux.HandleFunc("GET /api/v1/jobs/{id}/attempts/{n}/artifacts", f.read("manifest", f.manifest))
	mux.HandleFunc("GET /api/v1/jobs/{id}/attempts/{n}/artifacts/{path...}", f.read("open", f.open))
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeScheduler) client() *api.Client {
	return &api.Client{Base: f.srv.URL, Token: f.agentToken}
}

// injectNext queues actions for the next requests of kind.
func (f *fakeScheduler) injectNext(kind string, actions ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inject[kind] = append(f.inject[kind], actions...)
}

func (f *fakeScheduler) action(kind string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.inject[kind]
	if len(q) == 0 {
		return ""
	}
	f.inject[kind] = q[1:]
	return q[0]
}

func (f *fakeScheduler) note(format string, args ...any) {
	select {
	case f.events <- fmt.Sprintf(format, args...):
	default:
	}
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if v != nil {
		json.NewEncoder(w).Encode(v)
	}
}

// cut closes the connection without a reply: the request's effect stays,
// its answer is lost.
func cut(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

func (f *fakeScheduler) register(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.poolToken {
		reply(w, 401, api.Error{Error: "wrong or missing registration token"})
		return
	}
	var req api.RegisterRequest
	json.NewDecoder(r.Body).Decode(&req)
	f.note("register %s slots=%d", req.Name, req.Slots)
	reply(w, 201, api.Registration{ID: f.agentID, Token: f.agentToken,
		LeaseTimeout: api.Duration(f.leaseTimeout), Heartbeat: api.Duration(f.heartbeat)})
}

func (f *fakeScheduler) agent(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+f.agentToken || r.PathValue("id") != f.agentID {
			reply(w, 401, api.Error{Error: "unknown agent token"})
			return
		}
		h(w, r)
	}
}

func (f *fakeScheduler) lease(w http.ResponseWriter, r *http.Request) {
	wait, _ := time.ParseDuration(r.URL.Query().Get("wait"))
	deadline := time.After(wait)
	for {
		f.mu.Lock()
		if len(f.leases) > 0 {
			l := f.leases[0]
			f.leases = f.leases[1:]
			f.leasedAt[l.Attempt] = time.Now()
			hold := f.hold
			f.mu.Unlock()
			l.Expires = api.Duration(f.leaseTimeout)
			f.note("leased %s", l.Attempt)
			if hold != nil {
				hold(r, l)
			}
			reply(w, 200, l)
			return
		}
		f.mu.Unlock()
		select {
		case <-r.Context().Done():
			return
		case <-deadline:
			w.WriteHeader(204)
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (f *fakeScheduler) heartbeatH(w http.ResponseWriter, r *http.Request) {
	if f.action("heartbeat") == "500" {
		reply(w, 500, api.Error{Error: "injected"})
		return
	}
	var hb api.Heartbeat
	json.NewDecoder(r.Body).Decode(&hb)
	f.mu.Lock()
	f.heartbeats++
	kill := f.kill
	f.kill = nil
	f.mu.Unlock()
	reply(w, 200, api.HeartbeatReply{Kill: kill})
}

func (f *fakeScheduler) deregister(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.deregistered = true
	f.mu.Unlock()
	f.note("deregister")
	w.WriteHeader(204)
}

type attemptFunc func(w http.ResponseWriter, r *http.Request, a api.Attempt)

// dropWriter swallows a reply that is to be lost.
type dropWriter struct{ h http.Header }

func (d *dropWriter) Header() http.Header         { return d.h }
func (d *dropWriter) WriteHeader(int)             {}
func (d *dropWriter) Write(b []byte) (int, error) { return len(b), nil }

func pathAttempt(r *http.Request) api.Attempt {
	job, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	n, _ := strconv.Atoi(r.PathValue("n"))
	return api.Attempt{Job: job, Attempt: n}
}

// attempt wraps a mutation of an attempt: agent token, 410 once gone,
// then the injected action.
func (f *fakeScheduler) attempt(kind string, h attemptFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+f.agentToken {
			reply(w, 401, api.Error{Error: "unknown agent token"})
			return
		}
		a := pathAttempt(r)
		act := f.action(kind)
		f.mu.Lock()
		if act == "410" {
			f.gone[a] = true
		}
		gone := f.gone[a]
		f.mu.Unlock()
		switch {
		case gone:
			reply(w, 410, api.Error{Error: "not leased to this agent"})
			return
		case act == "500":
			reply(w, 500, api.Error{Error: "injected"})
			return
		}
		if act == "hang" {
			// Store, then answer nothing until the client gives up: a
			// connection that died without a reset.
			h(&dropWriter{h: http.Header{}}, r, a)
			<-r.Context().Done()
			return
		}
		if act == "drop" {
			h(&dropWriter{h: http.Header{}}, r, a)
			cut(w)
			return
		}
		h(w, r, a)
	}
}

func (f *fakeScheduler) read(kind string, h attemptFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if f.action(kind) == "500" {
			reply(w, 500, api.Error{Error: "injected"})
			return
		}
		h(w, r, pathAttempt(r))
	}
}

func (f *fakeScheduler) appendLog(w http.ResponseWriter, r *http.Request, a api.Attempt) {
	off, _ := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	data, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	size := int64(len(f.logs[a]))
	if off > size {
		f.mu.Unlock()
		reply(w, 409, api.LogAck{Size: size})
		return
	}
	if end := off + int64(len(data)); end > size {
		f.logs[a] = append(f.logs[a], data[size-off:]...)
		size = end
	}
	f.mu.Unlock()
	reply(w, 200, api.LogAck{Size: size})
}

// lose drops the last n bytes of a's log, as a scheduler that lost data.
func (f *fakeScheduler) lose(a api.Attempt, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs[a] = f.logs[a][:len(f.logs[a])-n]
}

func (f *fakeScheduler) log(a api.Attempt) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.logs[a]...)
}

func (f *fakeScheduler) step(w http.ResponseWriter, r *http.Request, a api.Attempt) {
	var s api.Step
	json.NewDecoder(r.Body).Decode(&s)
	f.mu.Lock()
	f.steps[a] = append(f.steps[a], s)
	f.mu.Unlock()
	w.WriteHeader(204)
}

func (f *fakeScheduler) finish(w http.ResponseWriter, r *http.Request, a api.Attempt) {
	var res api.Result
	json.NewDecoder(r.Body).Decode(&res)
	f.mu.Lock()
	f.results[a] = res
	f.mu.Unlock()
	f.note("finish %s %s", a, res.Status)
	w.WriteHeader(204)
}

func (f *fakeScheduler) result(a api.Attempt) (api.Result, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.results[a]
	return r, ok
}

func (f *fakeScheduler) put(w http.ResponseWriter, r *http.Request, a api.Attempt) {
	data, err := io.ReadAll(r.Body)
	if err != nil || int64(len(data)) != r.ContentLength {
		reply(w, 400, api.Error{Error: "short upload"})
		return
	}
	f.mu.Lock()
	if f.files[a] == nil {
		f.files[a] = map[string][]byte{}
	}
	f.files[a][r.PathValue("path")] = data
	f.mu.Unlock()
	w.WriteHeader(204)
}

func (f *fakeScheduler) commit(w http.ResponseWriter, r *http.Request, a api.Attempt) {
	data, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.manifests[a] = data
	f.mu.Unlock()
	w.WriteHeader(204)
}

func (f *fakeScheduler) abort(w http.ResponseWriter, r *http.Request, a api.Attempt) {
	f.mu.Lock()
	delete(f.files, a)
	f.mu.Unlock()
	f.note("abort %s", a)
	w.WriteHeader(204)
}

func (f *fakeScheduler) manifest(w http.ResponseWriter, r *http.Request, a api.Attempt) {
	f.mu.Lock()
	m, ok := f.manifests[a]
	f.mu.Unlock()
	if !ok {
		reply(w, 404, api.Error{Error: "not found"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(m)
}

func (f *fakeScheduler) open(w http.ResponseWriter, r *http.Request, a api.Attempt) {
	f.mu.Lock()
	data, ok := f.files[a][r.PathValue("path")]
	f.mu.Unlock()
	if !ok {
		reply(w, 404, api.Error{Error: "not found"})
		return
	}
	w.Write(data)
}

// waitFor waits for an event with the given text, or finds it among
// those that came before.
func (f *fakeScheduler) waitFor(want string) {
	f.t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		f.mu.Lock()
		seen := f.seen[want]
		f.mu.Unlock()
		if seen {
			return
		}
		select {
		case e := <-f.events:
			f.mu.Lock()
			f.seen[e] = true
			f.mu.Unlock()
		case <-timeout:
			f.t.Fatalf("no %q from the agent within a minute", want)
		}
	}
}
