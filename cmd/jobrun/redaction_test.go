package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/gittest"
	"github.com/jobrun/jobrun/scheduler/webhook"
)

const readmeJob = `
job "show" {
  image   = "IMAGE"
  network = "none"
  step "show" { run = "cat README" }
}
`

// TestCloneURLTokenNeverShown registers repositories whose clone URLs
// carry a token (http://x-access-token:TOKEN@host/app.git) with a real
// server and agent and a real git server over HTTP: one token it refuses,
// one it takes. Neither token may appear in a webhook's reply, a job's
// log or reason, the repository listing or the server's and agent's logs;
// the URLs do, without them.
func TestCloneURLTokenNeverShown(t *testing.T) {
	image := busybox(t)
	bin := buildJobrun(t)
	ctx := context.Background()
	const adminToken, regToken, secret = "e2e-admin", "e2e-reg", "e2e-hook-secret"
	const good, bad = "good-git-token-4f1a", "bad-git-token-9c2e"

	w := gittest.New(t)
	w.Commit("first", map[string]string{".ci.hcl": strings.ReplaceAll(readmeJob, "IMAGE", image), "README": "version one\n"})
	bare := w.Bare()
	w.Git("push", "-q", "origin", "main")
	served := gittest.Serve(t, filepath.Dir(bare), good) + "/" + filepath.Base(bare)
	withToken := func(tok string) string {
		return strings.Replace(served, "http://", "http://x-access-token:"+tok+"@", 1)
	}
	shown := strings.TrimPrefix(served, "http://")

	srv, addr := startDaemon(t, bin, regexp.MustCompile(`server listening on (\S+)`),
		"--state-dir", t.TempDir(), "server", "--listen", "127.0.0.1:0", "--log-level", "debug",
		"--admin-token", adminToken, "--registration-token", regToken, "--lease-timeout", "5s")
	base := "http://" + addr
	h := newTestHost(t)
	agent, _ := startDaemon(t, bin, regexp.MustCompile(`agent: (registered)`),
		"--state-dir", h.state, "--log-level", "debug", "agent", "--server", base, "--token", regToken, "--name", "e2e-agent")
	logs := func() string { return "\nserver:\n" + srv.log() + "\nagent:\n" + agent.log() }
	var seen strings.Builder // everything a person or a forge is shown
	noToken := func(what, s string) {
		t.Helper()
		seen.WriteString(s)
		for _, tok := range []string{good, bad} {
			if strings.Contains(s, tok) {
				t.Errorf("%s shows the token %q:\n%s", what, tok, s)
			}
		}
	}

	addRepo := func(name, url string) {
		var out, errb bytes.Buffer
		if code := run(ctx, []string{"repo", "add", name, "--url", url, "--secret", secret, "--forge", "github",
			"--server", base, "--admin-token", adminToken}, &out, &errb); code != 0 {
			t.Fatalf("jobrun repo add: exit %d\n%s%s", code, out.String(), errb.String())
		}
		noToken("jobrun repo add", out.String()+errb.String())
	}
	addRepo("refused", withToken(bad))
	addRepo("taken", withToken(good))
	c := &api.Client{Base: base, Token: adminToken}
	repos, err := c.Repos(ctx)
	if err != nil || len(repos) != 2 {
		t.Fatalf("repos: %+v %v", repos, err)
	}
	for _, r := range repos {
		noToken("the repository listing", r.CloneURL)
		if r.CloneURL != served {
			t.Errorf("listed clone URL %q, want %q", r.CloneURL, served)
		}
	}

	head := w.Commit("second", map[string]string{"README": "version two\n"})
	w.Git("push", "-q", "origin", "main")
	body, err := os.ReadFile("../../scheduler/webhook/testdata/github/push.json")
	if err != nil {
		t.Fatal(err)
	}
	body = bytes.ReplaceAll(body, []byte("7f5c2a8d1e6b4f3a9c0d2e1f4a5b6c7d8e9f0a1b"), []byte(head))
	hook := func(repo string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, base+"/hooks/github/"+repo, bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", "e2e-"+repo)
		req.Header.Set("X-Hub-Signature-256", "sha256="+webhook.Sign(body, []byte(secret)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// The refused token: the server's fetch fails, and the reply says
	// where it fetched from.
	code, reply := hook("refused")
	noToken("the webhook reply", reply)
	if code != http.StatusBadGateway || !strings.Contains(reply, shown) {
		t.Fatalf("webhook with a refused token: %d %s, want 502 naming %s%s", code, reply, shown, logs())
	}

	// The positive control: the token taken, the job runs from the
	// agent's checkout, whose notice names the URL.
	if code, reply := hook("taken"); code != http.StatusCreated {
		t.Fatalf("webhook: %d %s%s", code, reply, logs())
	}
	runs, err := c.Runs(ctx, "taken", "")
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs: %+v %v", runs, err)
	}
	r := waitRunDone(t, c, runs[0].ID, logs)
	jobLog := runLog(t, c, r)
	noToken("the job's log", jobLog)
	if r.Status != api.Succeeded || !strings.Contains(jobLog, "version two") || !strings.Contains(jobLog, "fetch "+served) {
		t.Fatalf("run %d: %s (%s); log:\n%s%s", r.ID, r.Status, r.Reason, jobLog, logs())
	}

	// A run of a clone URL given to the runs API: the agent clones it
	// itself and fails, saying where from in the log and the reason.
	created, err := c.CreateRun(ctx, api.NewRun{Repo: "direct", Branch: "main", Commit: head, CloneURL: withToken(bad),
		File: ".ci.hcl", Source: strings.ReplaceAll(readmeJob, "IMAGE", image)})
	if err != nil {
		t.Fatal(err)
	}
	r = waitRunDone(t, c, created.ID, logs)
	jobLog = runLog(t, c, r)
	noToken("the failed job's log", jobLog)
	noToken("the run's reason", r.Reason)
	if len(r.Jobs) != 1 {
		t.Fatalf("run %d has %d jobs", r.ID, len(r.Jobs))
	}
	j, err := c.Job(ctx, r.Jobs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	reason := j.Reason
	if j.Result != nil {
		reason += "\n" + j.Result.Reason
	}
	noToken("the job's reason", reason)
	if r.Status == api.Succeeded || !strings.Contains(reason, "clone "+served) || !strings.Contains(jobLog, "clone "+served) {
		t.Fatalf("run %d: %s, reason %q; log:\n%s%s", r.ID, r.Status, reason, jobLog, logs())
	}

	agent.stop(t)
	srv.stop(t)
	noToken("the server's log", srv.log())
	noToken("the agent's log", agent.log())
	// The control for the logs: they do name the repositories' URLs.
	if !strings.Contains(srv.log(), shown) {
		t.Errorf("the server's log never names %s:\n%s", shown, srv.log())
	}
}
