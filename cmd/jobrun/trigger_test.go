package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/gittest"
	"github.com/jobrun/jobrun/internal/testenv"
	"github.com/jobrun/jobrun/jobs"
	"github.com/jobrun/jobrun/scheduler/webhook"
)

// daemon is a jobrun server or agent a test started from the built
// binary; it is stopped with SIGTERM when the test ends.
type daemon struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan error
	once sync.Once
}

func (d *daemon) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.String()
}

// startDaemon runs the binary with args and waits for a stderr line
// matching want, returning its first submatch.
func startDaemon(t *testing.T, bin string, want *regexp.Regexp, args ...string) (*daemon, string) {
	t.Helper()
	d := &daemon{cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	d.cmd.Stdout = io.Discard
	pipe, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Tied to the test binary: a daemon a timed-out run could not stop
	// would outlive it, with its jobs.
	wait, err := testenv.StartChild(d.cmd)
	if err != nil {
		t.Fatal(err)
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			d.mu.Lock()
			d.out.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
			if m := want.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		d.done <- wait()
	}()
	t.Cleanup(func() { d.stop(t) })
	select {
	case v := <-found:
		return d, v
	case <-time.After(time.Minute):
		t.Fatalf("jobrun %s did not say %q within a minute:\n%s", strings.Join(args, " "), want, d.log())
	}
	return nil, ""
}

func (d *daemon) stop(t *testing.T) {
	d.once.Do(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-d.done:
			if err != nil {
				t.Errorf("jobrun %s: %v\n%s", strings.Join(d.cmd.Args[1:], " "), err, d.log())
			}
		case <-time.After(time.Minute):
			d.cmd.Process.Kill()
			<-d.done
			t.Errorf("jobrun %s did not stop on SIGTERM", strings.Join(d.cmd.Args[1:], " "))
		}
	})
}

const pushedJobs = `
workflow {
  on "push" { branches = ["main"] }
  on "pull_request" {}
}
job "show" {
  image   = "IMAGE"
  network = "none"
  secrets = ["DEPLOY_KEY"]
  step "show" { run = "cat README; test ! -e .git; echo \"key=$${DEPLOY_KEY:-none}\"" }
}
`

// TestWebhookToAgent is issue 8 end to end with the real binary: a
// repository registered with "jobrun repo add" (an HTTPS git server that
// wants the token), a push to it announced by a signed GitHub webhook, the
// job run by a real agent on a checkout of the pushed commit from the
// agent's mirror; a branch the on filter leaves out runs only through
// "jobrun trigger".
func TestWebhookToAgent(t *testing.T) {
	image := busybox(t)
	bin := buildJobrun(t)
	ctx := context.Background()
	const adminToken, regToken, secret, gitToken = "e2e-admin", "e2e-reg", "e2e-hook-secret", "e2e-git-token"

	w := gittest.New(t)
	w.Commit("first", map[string]string{".ci.hcl": strings.ReplaceAll(pushedJobs, "IMAGE", image), "README": "version one\n"})
	bare := w.Bare()
	w.Git("push", "-q", "origin", "main")
	cloneURL := gittest.Serve(t, filepath.Dir(bare), gitToken) + "/" + filepath.Base(bare)

	srv, addr := startDaemon(t, bin, regexp.MustCompile(`server listening on (\S+)`),
		"--state-dir", t.TempDir(), "server", "--listen", "127.0.0.1:0",
		"--admin-token", adminToken, "--registration-token", regToken, "--lease-timeout", "5s")
	base := "http://" + addr
	h := newTestHost(t)
	agent, _ := startDaemon(t, bin, regexp.MustCompile(`agent: (registered)`),
		"--state-dir", h.state, "--log-level", "info", "agent", "--server", base, "--token", regToken, "--name", "e2e-agent")
	logs := func() string { return "\nserver:\n" + srv.log() + "\nagent:\n" + agent.log() }

	// The forge's commit status API, as GitHub documents it.
	var statusMu sync.Mutex
	statuses := map[string][]string{} // commit -> states
	forge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sha, ok := strings.CutPrefix(r.URL.Path, "/repos/octo/hello/statuses/")
		var body struct {
			State     string `json:"state"`
			Context   string `json:"context"`
			TargetURL string `json:"target_url"`
		}
		if r.Method != http.MethodPost || !ok || r.Header.Get("Authorization") != "Bearer "+gitToken ||
			json.NewDecoder(r.Body).Decode(&body) != nil || body.Context != "jobrun" {
			http.Error(w, "not a commit status", http.StatusBadRequest)
			return
		}
		statusMu.Lock()
		statuses[sha] = append(statuses[sha], body.State)
		statusMu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	defer forge.Close()

	var out, errb bytes.Buffer
	if code := run(ctx, []string{"repo", "add", "hello", "--url", cloneURL, "--secret", secret, "--token", gitToken,
		"--forge", "github", "--api-url", forge.URL, "--forge-repo", "octo/hello",
		"--server", base, "--admin-token", adminToken}, &out, &errb); code != 0 {
		t.Fatalf("jobrun repo add: exit %d\n%s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), base+"/hooks/github/hello") {
		t.Errorf("repo add does not print the webhook URL:\n%s", out.String())
	}
	c := &api.Client{Base: base, Token: adminToken}
	if err := c.SetSecret(ctx, "hello", "DEPLOY_KEY", api.SetSecret{Value: "s3cr3t-deploy"}); err != nil {
		t.Fatal(err)
	}

	head := w.Commit("second", map[string]string{"README": "version two\n"})
	w.Git("push", "-q", "origin", "main")
	body, err := os.ReadFile("../../scheduler/webhook/testdata/github/push.json")
	if err != nil {
		t.Fatal(err)
	}
	body = bytes.ReplaceAll(body, []byte("7f5c2a8d1e6b4f3a9c0d2e1f4a5b6c7d8e9f0a1b"), []byte(head))
	hook := func(key string) int {
		req, _ := http.NewRequest(http.MethodPost, base+"/hooks/github/hello", bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", "e2e-"+key)
		req.Header.Set("X-Hub-Signature-256", "sha256="+webhook.Sign(body, []byte(key)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := hook("forged"); code != 401 {
		t.Fatalf("forged webhook: %d, want 401", code)
	}
	if code := hook(secret); code != 201 {
		t.Fatalf("webhook: %d, want 201%s", code, logs())
	}
	runs, err := c.Runs(ctx, "hello", "")
	if err != nil || len(runs) != 1 || runs[0].Commit != head {
		t.Fatalf("runs after the webhooks: %+v, %v; want one of %s", runs, err, head)
	}
	r := waitRunDone(t, c, runs[0].ID, logs)
	jobLog := runLog(t, c, r)
	if r.Status != api.Succeeded || !strings.Contains(jobLog, "version two") || strings.Contains(jobLog, "version one") ||
		!strings.Contains(jobLog, "key=***") {
		t.Fatalf("run %d: %s (%s); log:\n%s%s", r.ID, r.Status, r.Reason, jobLog, logs())
	}

	// The commit's statuses, sent by the server's status loop.
	deadline := time.Now().Add(30 * time.Second)
	for {
		statusMu.Lock()
		got := slices.Clone(statuses[head])
		statusMu.Unlock()
		// A run that ends within one pass of the status loop goes
		// straight to success; the scheduler's tests see each state.
		if len(got) > 0 && got[len(got)-1] == "success" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("statuses of %s: %q, want success last%s", head, got, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A pull request from a fork: its head only under refs/pull/5/head,
	// run untrusted, so without the secret (the push above had it).
	w.Git("checkout", "-q", "-b", "fork-work")
	fork := w.Commit("from a fork", map[string]string{"README": "version fork\n"})
	w.Git("push", "-q", "origin", fork+":refs/pull/5/head")
	w.Git("checkout", "-q", "main")
	prBody, err := os.ReadFile("../../scheduler/webhook/testdata/github/pull_request-fork.json")
	if err != nil {
		t.Fatal(err)
	}
	prBody = bytes.ReplaceAll(prBody, []byte("7f5c2a8d1e6b4f3a9c0d2e1f4a5b6c7d8e9f0a1b"), []byte(fork))
	prBody = bytes.ReplaceAll(prBody, []byte(`"number": 7`), []byte(`"number": 5`))
	req, _ := http.NewRequest(http.MethodPost, base+"/hooks/github/hello", bytes.NewReader(prBody))
	req.Header.Set("X-GitHub-Event", "pull_request")
	req.Header.Set("X-GitHub-Delivery", "e2e-pr")
	req.Header.Set("X-Hub-Signature-256", "sha256="+webhook.Sign(prBody, []byte(secret)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("fork pull request webhook: %s%s", resp.Status, logs())
	}
	runs, _ = c.Runs(ctx, "hello", "pull/5")
	if len(runs) != 1 || runs[0].Commit != fork {
		t.Fatalf("pull request runs: %+v", runs)
	}
	r = waitRunDone(t, c, runs[0].ID, logs)
	// Its agent got no forge token (the forge refuses a fetch without
	// it): it fetched the commit from the server's mirror.
	if jobLog := runLog(t, c, r); r.Status != api.Succeeded || !strings.Contains(jobLog, "version fork") || !strings.Contains(jobLog, "key=none") ||
		!strings.Contains(jobLog, "from the server's mirror") {
		t.Fatalf("fork pull request run %d: %s; log:\n%s%s", r.ID, r.Status, jobLog, logs())
	}

	// A branch the on filter leaves out: the webhook would start nothing,
	// a manual trigger runs its head.
	w.Git("checkout", "-q", "-b", "topic")
	topic := w.Commit("topic", map[string]string{"README": "version topic\n"})
	w.Git("push", "-q", "origin", "topic")
	out.Reset()
	errb.Reset()
	// As from a step of a job: JOBRUN_JOB (every step has it) selects
	// nothing; before, it made the trigger ask for that job alone.
	t.Setenv(jobs.VarJob, "not-a-job-of-hello")
	if code := run(ctx, []string{"trigger", "hello", "topic", "--server", base, "--admin-token", adminToken}, &out, &errb); code != 0 {
		t.Fatalf("jobrun trigger: exit %d\n%s%s", code, out.String(), errb.String())
	}
	runs, _ = c.Runs(ctx, "hello", "topic")
	if len(runs) != 1 || runs[0].Commit != topic || runs[0].Trigger != "manual" {
		t.Fatalf("manual runs: %+v", runs)
	}
	r = waitRunDone(t, c, runs[0].ID, logs)
	if jobLog := runLog(t, c, r); r.Status != api.Succeeded || !strings.Contains(jobLog, "version topic") {
		t.Fatalf("manual run %d: %s; log:\n%s%s", r.ID, r.Status, jobLog, logs())
	}
	// The second job fetched into the same mirror: one per repository.
	mirrors, _ := filepath.Glob(filepath.Join(h.state, "work", "mirrors", "hello-*.git"))
	if len(mirrors) != 1 {
		t.Errorf("agent mirrors: %v, want one for the repository", mirrors)
	}
	agent.stop(t)
	srv.stop(t)
}

// waitRunDone waits for run id to end, 2 minutes at the most, and
// returns it; at the deadline it fails t with logs().
func waitRunDone(t *testing.T, c *api.Client, id int64, logs func() string) *api.Run {
	t.Helper()
	return waitRunWithin(t, c, id, 2*time.Minute, 50*time.Millisecond, logs)
}

// waitRunWithin asks for run id every poll until it ends, and returns it;
// after wait it fails t with logs().
func waitRunWithin(t *testing.T, c *api.Client, id int64, wait, poll time.Duration, logs func() string) *api.Run {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		r, err := c.Run(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if api.Final(r.Status) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %d still %s after %s%s", id, r.Status, wait, logs())
		}
		time.Sleep(poll)
	}
}

func runLog(t *testing.T, c *api.Client, r *api.Run) string {
	t.Helper()
	var b strings.Builder
	for _, j := range r.Jobs {
		rc, err := c.Log(context.Background(), j.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(&b, rc)
		rc.Close()
	}
	return b.String()
}
