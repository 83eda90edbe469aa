package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/gittest"
)

const mergeRequestJobs = `
workflow {
  on "pull_request" {}
}
job "show" {
  image   = "IMAGE"
  network = "none"
  step "show" { run = "cat README" }
}
`

// TestGitLabMergeRequestToAgent is issue 22 item 20 end to end with the
// real binary: a repository registered without --forge gets a GitLab
// merge request webhook (the sample payload with its commit rewritten to
// a local one published as refs/merge-requests/1/head, the only ref that
// has it); the server fetches that ref and queues pull/1, and the real
// agent must fetch the same ref, not GitHub's refs/pull/1/head, and run
// the job on that commit.
func TestGitLabMergeRequestToAgent(t *testing.T) {
	image := busybox(t)
	bin := buildJobrun(t)
	ctx := context.Background()
	const adminToken, regToken, secret, gitToken = "e2e-admin", "e2e-reg", "e2e-hook-secret", "e2e-git-token"

	w := gittest.New(t)
	w.Commit("first", map[string]string{".ci.hcl": strings.ReplaceAll(mergeRequestJobs, "IMAGE", image), "README": "version main\n"})
	bare := w.Bare()
	w.Git("push", "-q", "origin", "main")
	w.Git("checkout", "-q", "-b", "feature")
	mr := w.Commit("merge request", map[string]string{"README": "version merge request\n"})
	w.Git("push", "-q", "origin", mr+":refs/merge-requests/1/head")
	w.Git("checkout", "-q", "main")
	cloneURL := gittest.Serve(t, filepath.Dir(bare), gitToken) + "/" + filepath.Base(bare)

	srv, addr := startDaemon(t, bin, regexp.MustCompile(`server listening on (\S+)`),
		"--state-dir", t.TempDir(), "server", "--listen", "127.0.0.1:0",
		"--admin-token", adminToken, "--registration-token", regToken, "--lease-timeout", "5s")
	base := "http://" + addr
	h := newTestHost(t)
	agent, _ := startDaemon(t, bin, regexp.MustCompile(`agent: (registered)`),
		"--state-dir", h.state, "--log-level", "info", "agent", "--server", base, "--token", regToken, "--name", "e2e-agent")
	logs := func() string { return "\nserver:\n" + srv.log() + "\nagent:\n" + agent.log() }

	var out, errb bytes.Buffer
	if code := run(ctx, []string{"repo", "add", "group/hello", "--url", cloneURL, "--secret", secret, "--token", gitToken,
		"--server", base, "--admin-token", adminToken}, &out, &errb); code != 0 {
		t.Fatalf("jobrun repo add: exit %d\n%s%s", code, out.String(), errb.String())
	}
	body, err := os.ReadFile("../../scheduler/webhook/testdata/gitlab/merge_request-same-nonames.json")
	if err != nil {
		t.Fatal(err)
	}
	body = bytes.ReplaceAll(body, []byte("7f5c2a8d1e6b4f3a9c0d2e1f4a5b6c7d8e9f0a1b"), []byte(mr))
	body = bytes.ReplaceAll(body, []byte(`"iid": 3`), []byte(`"iid": 1`))
	req, _ := http.NewRequest(http.MethodPost, base+"/hooks/gitlab/group/hello", bytes.NewReader(body))
	req.Header.Set("X-Gitlab-Event", "Merge Request Hook")
	req.Header.Set("X-Gitlab-Event-UUID", "e2e-mr")
	req.Header.Set("X-Gitlab-Token", secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("merge request webhook: %s%s", resp.Status, logs())
	}
	c := &api.Client{Base: base, Token: adminToken}
	runs, err := c.Runs(ctx, "group/hello", "pull/1")
	if err != nil || len(runs) != 1 || runs[0].Commit != mr {
		t.Fatalf("merge request runs: %+v, %v; want one of %s", runs, err, mr)
	}
	r := waitRunDone(t, c, runs[0].ID, logs)
	if jobLog := runLog(t, c, r); r.Status != api.Succeeded || !strings.Contains(jobLog, "version merge request") ||
		!strings.Contains(jobLog, "refs/merge-requests/1/head") {
		t.Fatalf("merge request run %d: %s (%s); log:\n%s%s", r.ID, r.Status, r.Reason, jobLog, logs())
	}
	agent.stop(t)
	srv.stop(t)
}
