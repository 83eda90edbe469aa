package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/gittest"
	"github.com/jobrun/jobrun/internal/pgtest"
	"github.com/jobrun/jobrun/scheduler/cron"
	"github.com/jobrun/jobrun/scheduler/webhook"
)

const hookSecret = "hook-secret"

// sampleSHA is the commit the payloads in webhook/testdata name.
const sampleSHA = "7f5c2a8d1e6b4f3a9c0d2e1f4a5b6c7d8e9f0a1b"

// triggerServer starts a server whose repositories are mirrored under a
// temp dir; it returns the URL and the server (for cron passes).
func triggerServer(t testing.TB, st Store, tweak func(*Config)) (string, *Server) {
	return startTriggerServer(t, st, tweak, true)
}

// startTriggerServer is triggerServer; without background the server's Run
// (expiry, cron and status loops) is not started, so a test drives them.
func startTriggerServer(t testing.TB, st Store, tweak func(*Config), background bool) (string, *Server) {
	t.Helper()
	return startServer(t, st, func(c *Config) {
		c.Triggers = TriggerConfig{MirrorDir: filepath.Join(t.TempDir(), "mirrors"), PublicURL: "https://ci.example.com",
			StatusEvery: 20 * time.Millisecond}
		if tweak != nil {
			tweak(c)
		}
	}, background)
}

// forgeRepo is a real repository with a job file on main, pushed to a bare
// repository that stands for the forge's copy.
type forgeRepo struct {
	w    *gittest.Repo
	bare string
}

func newForgeRepo(t testing.TB, ci string) *forgeRepo {
	w := gittest.New(t)
	w.Commit("first", map[string]string{".ci.hcl": ci})
	r := &forgeRepo{w: w, bare: w.Bare()}
	w.Git("push", "-q", "origin", "main")
	return r
}

// push commits files on branch (made from main if new) and pushes it,
// returning the commit.
func (r *forgeRepo) push(branch string, files map[string]string) string {
	if branch != "main" {
		r.w.Git("checkout", "-q", "-B", branch)
		defer r.w.Git("checkout", "-q", "main")
	}
	c := r.w.Commit("change "+branch, files)
	r.w.Git("push", "-q", "-f", "origin", branch)
	return c
}

// payload is a testdata sample with its commit and ref replaced.
func payload(t *testing.T, forge, file, commit, ref string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("webhook", "testdata", forge, file))
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.ReplaceAll(b, []byte(sampleSHA), []byte(commit))
	if ref != "" {
		for _, from := range []string{`"refs/heads/main"`, `"refs/heads/feature"`, `"refs/tags/v1.0.0"`} {
			b = bytes.ReplaceAll(b, []byte(from), []byte(`"`+ref+`"`))
		}
	}
	return b
}

var deliveries int

// deliver posts a signed delivery and returns the status and the reply.
func deliver(t *testing.T, base, forge, repo, event string, body []byte, key string) (int, string) {
	t.Helper()
	deliveries++
	req, _ := http.NewRequest(http.MethodPost, base+"/hooks/"+forge+"/"+repo, bytes.NewReader(body))
	id := fmt.Sprintf("delivery-%d-%d", time.Now().UnixNano(), deliveries)
	switch forge {
	case webhook.GitHub:
		req.Header.Set("X-GitHub-Event", event)
		req.Header.Set("X-GitHub-Delivery", id)
		req.Header.Set("X-Hub-Signature-256", "sha256="+webhook.Sign(body, []byte(key)))
	case webhook.GitLab:
		req.Header.Set("X-Gitlab-Event", event)
		req.Header.Set("X-Gitlab-Event-UUID", id)
		req.Header.Set("X-Gitlab-Token", key)
	case webhook.Gitea:
		req.Header.Set("X-Gitea-Event", event)
		req.Header.Set("X-Gitea-Delivery", id)
		req.Header.Set("X-Gitea-Signature", webhook.Sign(body, []byte(key)))
	}
	return send(t, req)
}

func send(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func runCount(t *testing.T, base, repo string) []api.Run {
	t.Helper()
	runs, err := admin(base).Runs(context.Background(), repo, "")
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

func addRepo(t *testing.T, base string, r api.NewRepo) {
	t.Helper()
	if _, err := admin(base).AddRepo(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

const pushMainOnly = `
workflow {
  on "push" { branches = ["main", "release/*"] }
  on "tag" {}
  on "pull_request" {}
}
job "build" {
  image = "busybox"
  secrets = ["TOKEN"]
  step "b" { run = "true" }
}
`

func TestRepoAPI(t *testing.T) {
	base, _ := triggerServer(t, sqliteStore(t), nil)
	ctx := context.Background()
	nr := api.NewRepo{Name: "octo/hello", CloneURL: "https://example.com/octo/hello.git", Secret: "s", Token: "ghp_x", Forge: "github",
		Submodules: true, Depth: 5}
	if _, err := (&api.Client{Base: base, Token: "nope"}).AddRepo(ctx, nr); !api.IsStatus(err, 401) {
		t.Fatalf("add without the admin token: %v, want 401", err)
	}
	if _, err := admin(base).AddRepo(ctx, api.NewRepo{Name: "../x", CloneURL: "u"}); !api.IsStatus(err, 400) {
		t.Fatalf("bad name: %v, want 400", err)
	}
	got, err := admin(base).AddRepo(ctx, nr)
	if err != nil {
		t.Fatal(err)
	}
	if !got.HasSecret || !got.HasToken || got.HasSSHKey || got.DefaultBranch != "main" || !got.Submodules || got.Depth != 5 {
		t.Fatalf("repo = %+v", got)
	}
	// Updating without secrets keeps them.
	nr.Secret, nr.Token, nr.CloneURL = "", "", "https://example.com/octo/hello2.git"
	if _, err := admin(base).AddRepo(ctx, nr); err != nil {
		t.Fatal(err)
	}
	list, err := admin(base).Repos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || !list[0].HasSecret || !list[0].HasToken || list[0].CloneURL != nr.CloneURL {
		t.Fatalf("repos = %+v", list)
	}
	raw, _ := json.Marshal(list)
	if bytes.Contains(raw, []byte("ghp_x")) {
		t.Fatalf("the token is in the listing: %s", raw)
	}
	if _, err := (&api.Client{Base: base}).Repos(ctx); !api.IsStatus(err, 401) {
		t.Fatalf("list without the admin token: %v, want 401", err)
	}
}

// TestGitHubWebhooks drives every refusal and every kind of event through
// the HTTP handler against a real repository.
func TestGitHubWebhooks(t *testing.T) {
	base, _ := triggerServer(t, sqliteStore(t), nil)
	repo := newForgeRepo(t, pushMainOnly)
	addRepo(t, base, api.NewRepo{Name: "hello", CloneURL: repo.bare, Secret: hookSecret, Forge: "github"})
	head := repo.push("main", map[string]string{"a": "1"})

	body := payload(t, "github", "push.json", head, "")
	// Refusals first: nothing may be queued by any of them.
	if code, msg := deliver(t, base, "github", "hello", "push", body, "wrong"); code != 401 {
		t.Fatalf("wrong secret: %d %s", code, msg)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/hooks/github/hello", bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	if code, msg := send(t, req); code != 401 || !strings.Contains(msg, "X-Hub-Signature-256") {
		t.Fatalf("no signature: %d %s", code, msg)
	}
	big := append(bytes.Repeat([]byte(" "), 1<<20), body...)
	if code, msg := deliver(t, base, "github", "hello", "push", big, hookSecret); code != 413 {
		t.Fatalf("oversized: %d %s", code, msg)
	}
	if code, msg := deliver(t, base, "github", "hello", "push", []byte(`{"ref":`), hookSecret); code != 400 || !strings.Contains(msg, "unexpected end of JSON") {
		t.Fatalf("malformed: %d %s", code, msg)
	}
	if code, msg := deliver(t, base, "github", "nosuch", "push", body, hookSecret); code != 401 {
		t.Fatalf("unknown repository: %d %s, want 401 as for a wrong signature", code, msg)
	}
	if runs := runCount(t, base, "hello"); len(runs) != 0 {
		t.Fatalf("refused deliveries queued %d runs", len(runs))
	}

	// The positive control: the same body, signed right.
	code, msg := deliver(t, base, "github", "hello", "push", body, hookSecret)
	if code != 201 {
		t.Fatalf("push: %d %s", code, msg)
	}
	runs := runCount(t, base, "hello")
	if len(runs) != 1 || runs[0].Commit != head || runs[0].Trigger != "push" || runs[0].Branch != "main" {
		t.Fatalf("runs after a push: %+v", runs)
	}
	// Replays: the same delivery id, and the same body under a new id.
	req, _ = http.NewRequest(http.MethodPost, base+"/hooks/github/hello", bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "fixed-id")
	req.Header.Set("X-Hub-Signature-256", "sha256="+webhook.Sign(body, []byte(hookSecret)))
	if code, msg := send(t, req); code != 200 || !strings.Contains(msg, "already received") {
		t.Fatalf("replayed body: %d %s", code, msg)
	}
	withID := func(body []byte, id string) *http.Request {
		req, _ := http.NewRequest(http.MethodPost, base+"/hooks/github/hello", bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", id)
		req.Header.Set("X-Hub-Signature-256", "sha256="+webhook.Sign(body, []byte(hookSecret)))
		return req
	}
	second := repo.push("main", map[string]string{"b": "2"})
	if code, msg := send(t, withID(payload(t, "github", "push.json", second, ""), "fixed-id")); code != 201 {
		t.Fatalf("second push: %d %s", code, msg)
	}
	third := repo.push("main", map[string]string{"b": "3"})
	if code, msg := send(t, withID(payload(t, "github", "push.json", third, ""), "fixed-id")); code != 200 || !strings.Contains(msg, "already received") {
		t.Fatalf("replayed delivery id with another body: %d %s", code, msg)
	}
	if runs := runCount(t, base, "hello"); len(runs) != 2 {
		t.Fatalf("replays queued runs: %d runs, want 2", len(runs))
	}

	// A branch the on filter leaves out, a deleted branch, a ping.
	feature := repo.push("feature", map[string]string{"c": "3"})
	if code, msg := deliver(t, base, "github", "hello", "push", payload(t, "github", "push.json", feature, "refs/heads/feature"), hookSecret); code != 202 || !strings.Contains(msg, "no on") {
		t.Fatalf("push to a filtered branch: %d %s", code, msg)
	}
	if code, msg := deliver(t, base, "github", "hello", "push", payload(t, "github", "push-delete.json", "", ""), hookSecret); code != 200 || !strings.Contains(msg, "deleted") {
		t.Fatalf("branch deletion: %d %s", code, msg)
	}
	if code, msg := deliver(t, base, "github", "hello", "ping", payload(t, "github", "ping.json", "", ""), hookSecret); code != 202 {
		t.Fatalf("ping: %d %s", code, msg)
	}
	if code, msg := deliver(t, base, "github", "hello", "issues", []byte(`{"action":"opened"}`), hookSecret); code != 202 || !strings.Contains(msg, "starts nothing") {
		t.Fatalf("unknown event: %d %s", code, msg)
	}
	if runs := runCount(t, base, "hello"); len(runs) != 2 {
		t.Fatalf("ignored events queued runs: %d runs", len(runs))
	}

	// A tag.
	repo.w.Git("tag", "v1.0.0", head)
	repo.w.Git("push", "-q", "origin", "v1.0.0")
	if code, msg := deliver(t, base, "github", "hello", "push", payload(t, "github", "push-tag.json", head, ""), hookSecret); code != 201 {
		t.Fatalf("tag: %d %s", code, msg)
	}

	// A pull request from a fork: its head is only under refs/pull/7/head.
	fork := repo.push("fork-work", map[string]string{"evil": "x"})
	repo.w.Git("push", "-q", "origin", ":fork-work")
	repo.w.Git("push", "-q", "origin", fork+":refs/pull/7/head")
	if code, msg := deliver(t, base, "github", "hello", "pull_request", payload(t, "github", "pull_request-fork.json", fork, ""), hookSecret); code != 201 {
		t.Fatalf("fork pull request: %d %s", code, msg)
	}
	runs = runCount(t, base, "hello")
	if len(runs) != 4 {
		t.Fatalf("runs: %d, want two pushes, a tag, a pull request", len(runs))
	}
	byTrigger := map[string]api.Run{}
	for _, r := range runs {
		byTrigger[r.Trigger] = r
	}
	if r := byTrigger["tag"]; r.Branch != "tags/v1.0.0" || r.Commit != head {
		t.Errorf("tag run: %+v", r)
	}
	if r := byTrigger["pull_request"]; r.Branch != "pull/7" || r.Commit != fork {
		t.Errorf("pull request run: %+v", r)
	}

	// The fork's job is leased untrusted, without the secret, with the
	// ref to fetch its commit from.
	if err := admin(base).SetSecret(context.Background(), "hello", "TOKEN", api.SetSecret{Value: "v"}); err != nil {
		t.Fatal(err)
	}
	agent, reg := register(t, base, "a", 3)
	got := map[string]*api.Lease{}
	for i := 0; i < 3; i++ {
		l, err := agent.Lease(context.Background(), reg.ID, time.Second)
		if err != nil || l == nil {
			t.Fatalf("lease %d: %v %v", i, l, err)
		}
		got[l.Branch] = l
	}
	pr := got["pull/7"]
	if pr == nil || !pr.Untrusted || len(pr.Secrets) != 0 || pr.Checkout == nil || pr.Checkout.Ref != "refs/pull/7/head" || pr.CloneURL != repo.bare {
		t.Fatalf("fork pull request lease: %+v", pr)
	}
	if m := got["main"]; m == nil || m.Commit != second || m.Untrusted || m.Secrets["TOKEN"] != "v" || m.Checkout == nil || m.Checkout.Ref != "" {
		t.Fatalf("main lease (the positive control): %+v", m)
	}
}

func TestGitLabAndGiteaWebhooks(t *testing.T) {
	base, _ := triggerServer(t, sqliteStore(t), nil)
	repo := newForgeRepo(t, pushMainOnly)
	addRepo(t, base, api.NewRepo{Name: "group/hello", CloneURL: repo.bare, Secret: hookSecret, Forge: "gitlab"})
	addRepo(t, base, api.NewRepo{Name: "org/hello", CloneURL: repo.bare, Secret: hookSecret, Forge: "gitea"})
	head := repo.push("main", map[string]string{"a": "1"})
	for _, c := range []struct{ forge, repo, event string }{
		{"gitlab", "group/hello", "Push Hook"},
		{"gitea", "org/hello", "push"},
	} {
		if code, msg := deliver(t, base, c.forge, c.repo, c.event, payload(t, c.forge, "push.json", head, ""), "wrong"); code != 401 {
			t.Fatalf("%s wrong secret: %d %s", c.forge, code, msg)
		}
		if code, msg := deliver(t, base, c.forge, c.repo, c.event, payload(t, c.forge, "push.json", head, ""), hookSecret); code != 201 {
			t.Fatalf("%s push: %d %s", c.forge, code, msg)
		}
		if code, msg := deliver(t, base, c.forge, c.repo, c.event, payload(t, c.forge, "push-delete.json", "", ""), hookSecret); code != 200 {
			t.Fatalf("%s deletion: %d %s", c.forge, code, msg)
		}
		if runs := runCount(t, base, c.repo); len(runs) != 1 || runs[0].Commit != head {
			t.Fatalf("%s runs: %+v", c.forge, runs)
		}
	}
	// A GitLab merge request from a fork.
	fork := repo.push("mr", map[string]string{"x": "y"})
	repo.w.Git("push", "-q", "origin", fork+":refs/merge-requests/3/head")
	if code, msg := deliver(t, base, "gitlab", "group/hello", "Merge Request Hook", payload(t, "gitlab", "merge_request-fork.json", fork, ""), hookSecret); code != 201 {
		t.Fatalf("merge request: %d %s", code, msg)
	}
	runs := runCount(t, base, "group/hello")
	if len(runs) != 2 || runs[0].Branch != "pull/3" || runs[0].Commit != fork {
		t.Fatalf("merge request run: %+v", runs[0])
	}
}

func TestBadJobFileMakesFailedRunFromPush(t *testing.T) {
	base, _ := triggerServer(t, sqliteStore(t), nil)
	repo := newForgeRepo(t, pushMainOnly)
	addRepo(t, base, api.NewRepo{Name: "hello", CloneURL: repo.bare, Secret: hookSecret})
	head := repo.push("main", map[string]string{".ci.hcl": "job \"x\" {\n  image = 3\n}\n"})
	if code, msg := deliver(t, base, "github", "hello", "push", payload(t, "github", "push.json", head, ""), hookSecret); code != 201 {
		t.Fatalf("push: %d %s", code, msg)
	}
	runs := runCount(t, base, "hello")
	if len(runs) != 1 || runs[0].Status != api.Errored || !strings.Contains(runs[0].Reason, "on .ci.hcl:1:1") {
		t.Fatalf("runs: %+v; want one failed run with the diagnostics", runs)
	}
	// A commit without a job file starts nothing, and says so.
	repo.w.Git("rm", "-q", ".ci.hcl")
	repo.w.Git("commit", "-qm", "drop")
	none := repo.w.Git("rev-parse", "HEAD")
	repo.w.Git("push", "-q", "origin", "main")
	if code, msg := deliver(t, base, "github", "hello", "push", payload(t, "github", "push.json", none, ""), hookSecret); code != 202 || !strings.Contains(msg, "no .ci.hcl") {
		t.Fatalf("push without a job file: %d %s", code, msg)
	}
}

func TestManualTrigger(t *testing.T) {
	base, _ := triggerServer(t, sqliteStore(t), nil)
	repo := newForgeRepo(t, pushMainOnly)
	addRepo(t, base, api.NewRepo{Name: "hello", CloneURL: repo.bare})
	head := repo.push("topic", map[string]string{"t": "1"})
	ctx := context.Background()
	if _, err := (&api.Client{Base: base}).Trigger(ctx, "hello", api.TriggerRun{Branch: "topic"}); !api.IsStatus(err, 401) {
		t.Fatalf("trigger without the admin token: %v", err)
	}
	// topic is not in the push filter, but a manual run is asked for.
	run, err := admin(base).Trigger(ctx, "hello", api.TriggerRun{Branch: "topic", Env: map[string]string{"X": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if run.Commit != head || run.Trigger != "manual" || run.Branch != "topic" || len(run.Jobs) != 1 {
		t.Fatalf("manual run: %+v", run)
	}
	if _, err := admin(base).Trigger(ctx, "hello", api.TriggerRun{Branch: "nosuch"}); !api.IsStatus(err, 404) {
		t.Fatalf("trigger of a missing branch: %v, want 404", err)
	}
	// A name with a slash travels escaped in the path.
	addRepo(t, base, api.NewRepo{Name: "octo/hello", CloneURL: repo.bare})
	if run, err := admin(base).Trigger(ctx, "octo/hello", api.TriggerRun{Branch: "topic"}); err != nil || run.Repo != "octo/hello" {
		t.Fatalf("trigger of octo/hello: %+v, %v", run, err)
	}
	if _, err := admin(base).Trigger(ctx, "nosuch", api.TriggerRun{Branch: "main"}); !api.IsStatus(err, 404) {
		t.Fatalf("trigger of a missing repository: %v, want 404", err)
	}
}

const nightly = `
workflow {
  on "push" { branches = ["main"] }
  on "cron" { schedule = "*/10 * * * *" }
}
job "build" {
  image = "busybox"
  step "b" { run = "true" }
}
`

// cronRuns counts the cron runs of repo.
func cronRuns(t *testing.T, base, repo string) int {
	n := 0
	for _, r := range runCount(t, base, repo) {
		if r.Trigger == "cron" {
			n++
		}
	}
	return n
}

// TestCronFakeClock fires a schedule read from the default branch with a
// fake clock: once per tick, nothing before the schedule was pushed, one
// run for ticks missed while the server was down, none after the
// schedule is removed.
func TestCronFakeClock(t *testing.T) {
	st := sqliteStore(t)
	start := time.Now().Truncate(time.Hour).Add(time.Hour + time.Minute) // hh:01
	clock := cron.NewFake(start)
	base, srv := startTriggerServer(t, st, func(c *Config) {
		c.Triggers.Clock = clock
		c.Triggers.CronEvery = time.Minute
		c.Log = hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: hclog.Debug})
	}, false)
	repo := newForgeRepo(t, nightly)
	addRepo(t, base, api.NewRepo{Name: "hello", CloneURL: repo.bare, Secret: hookSecret})
	ctx := context.Background()
	// Registration read the schedule from the default branch's head; it
	// holds from then (moved to the fake clock's start here).
	repos, _ := admin(base).Repos(ctx)
	if len(repos) != 1 || len(repos[0].Schedules) != 1 {
		t.Fatalf("schedules after registration: %+v", repos)
	}
	st.db.Exec(`UPDATE repos SET cron_since = $1`, ms(start))
	seen := map[string]time.Time{}
	srv.cronPass(ctx, clock.Now(), seen)
	if n := cronRuns(t, base, "hello"); n != 0 {
		t.Fatalf("%d cron runs before the first tick", n)
	}
	head := repo.push("main", map[string]string{"a": "1"})
	// The push records the schedule at the real time; the fake clock
	// starts after it.
	if code, msg := deliver(t, base, "github", "hello", "push", payload(t, "github", "push.json", head, ""), hookSecret); code != 201 {
		t.Fatalf("push: %d %s", code, msg)
	}
	repos, _ = admin(base).Repos(ctx)
	if len(repos) != 1 || len(repos[0].Schedules) != 1 || repos[0].Schedules[0] != "*/10 * * * *" {
		t.Fatalf("schedules: %+v", repos)
	}
	st.db.Exec(`UPDATE repos SET cron_since = $1`, ms(start))

	srv.cronPass(ctx, clock.Now(), seen) // hh:01: no tick since hh:01
	if n := cronRuns(t, base, "hello"); n != 0 {
		t.Fatalf("%d cron runs before the first tick", n)
	}
	clock.Advance(9 * time.Minute) // hh:10
	srv.cronPass(ctx, clock.Now(), seen)
	srv.cronPass(ctx, clock.Now(), seen) // the same tick again: no second run
	if n := cronRuns(t, base, "hello"); n != 1 {
		t.Fatalf("cron runs at hh:10: %d, want 1", n)
	}
	// A restart (a new server, no memory) during the same tick fires nothing.
	_, srv2 := startTriggerServer(t, st, func(c *Config) { c.Triggers.Clock = clock }, false)
	srv2.cronPass(ctx, clock.Now(), map[string]time.Time{})
	if n := cronRuns(t, base, "hello"); n != 1 {
		t.Fatalf("cron runs after a restart in the same tick: %d, want 1", n)
	}
	// Down for three ticks (hh:20, :30, :40): one run when back.
	clock.Advance(35 * time.Minute) // hh:45
	srv2.cronPass(ctx, clock.Now(), map[string]time.Time{})
	if n := cronRuns(t, base, "hello"); n != 2 {
		t.Fatalf("cron runs after missed ticks: %d, want 2", n)
	}
	var fires int
	st.db.QueryRow(`SELECT COUNT(*) FROM cron_fires`).Scan(&fires)
	if fires != 4 {
		t.Fatalf("cron_fires rows: %d, want 4 (hh:10 run, hh:20/:30 claimed, hh:40 run)", fires)
	}
	// The loop itself, driven by the clock.
	ctx2, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { srv2.cronLoop(ctx2); close(done) }()
	waitFor(t, func() bool { return clock.Waiters() > 0 })
	clock.Advance(5 * time.Minute) // hh:50
	waitFor(t, func() bool { return cronRuns(t, base, "hello") == 3 })
	cancel()
	<-done

	// A push that drops the schedule stops it.
	head = repo.push("main", map[string]string{".ci.hcl": pushMainOnly})
	if code, msg := deliver(t, base, "github", "hello", "push", payload(t, "github", "push.json", head, ""), hookSecret); code != 201 {
		t.Fatalf("push: %d %s", code, msg)
	}
	clock.Advance(time.Hour)
	srv2.cronPass(ctx, clock.Now(), map[string]time.Time{})
	if n := cronRuns(t, base, "hello"); n != 3 {
		t.Fatalf("cron runs after the schedule was removed: %d, want 3", n)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCronTwoServersPostgres runs the cron loops of two servers on one
// PostgreSQL database from one fake clock: every tick fires exactly once.
func TestCronTwoServersPostgres(t *testing.T) {
	url := pgtest.Database(t)
	open := func() *SQL {
		s, err := OpenPostgres(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	start := time.Now().Truncate(time.Hour).Add(time.Hour + time.Minute)
	clock := cron.NewFake(start)
	tweak := func(c *Config) { c.Triggers.Clock = clock; c.Triggers.CronEvery = time.Minute }
	st := open()
	base, srv1 := startTriggerServer(t, st, tweak, false)
	_, srv2 := startTriggerServer(t, open(), tweak, false)
	repo := newForgeRepo(t, nightly)
	addRepo(t, base, api.NewRepo{Name: "hello", CloneURL: repo.bare, Secret: hookSecret})
	head := repo.push("main", map[string]string{"a": "1"})
	if code, msg := deliver(t, base, "github", "hello", "push", payload(t, "github", "push.json", head, ""), hookSecret); code != 201 {
		t.Fatalf("push: %d %s", code, msg)
	}
	st.db.Exec(`UPDATE repos SET cron_since = $1`, ms(start))

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range []*Server{srv1, srv2} {
		wg.Add(1)
		go func() { defer wg.Done(); s.cronLoop(ctx) }()
	}
	defer func() { cancel(); wg.Wait() }()
	const ticks = 6
	for i := 1; i <= ticks; i++ {
		waitFor(t, func() bool { return clock.Waiters() == 2 })
		clock.Advance(10 * time.Minute)
		waitFor(t, func() bool { return cronRuns(t, base, "hello") >= i })
	}
	waitFor(t, func() bool { return clock.Waiters() == 2 }) // both passes done
	if n := cronRuns(t, base, "hello"); n != ticks {
		t.Fatalf("cron runs: %d, want %d (one per tick)", n, ticks)
	}
	var rows, distinct int
	st.db.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT run_id) FROM cron_fires`).Scan(&rows, &distinct)
	if rows != ticks || distinct != ticks {
		t.Fatalf("cron_fires: %d rows, %d distinct runs; want %d of each", rows, distinct, ticks)
	}
}

// TestDeliveries checks the replay record on both databases: a key seen
// before refuses the whole delivery and records none of its other keys;
// forgotten or pruned keys are accepted again.
func TestDeliveries(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		s, ctx := open(), context.Background()
		t0 := time.Now()
		if ok, err := s.Deliver(ctx, "r", []string{"a", "b"}, t0); !ok || err != nil {
			t.Fatalf("first delivery: %v %v", ok, err)
		}
		if ok, err := s.Deliver(ctx, "r", []string{"c", "b"}, t0); ok || err != nil {
			t.Fatalf("replay by one key: %v %v", ok, err)
		}
		if ok, _ := s.Deliver(ctx, "r", []string{"c"}, t0); !ok {
			t.Fatal("the key of a refused delivery was recorded")
		}
		if err := s.Undeliver(ctx, []string{"a", "b"}); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.Deliver(ctx, "r", []string{"a", "b"}, t0); !ok {
			t.Fatal("a forgotten delivery is refused")
		}
		if err := s.PruneDeliveries(ctx, t0.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.Deliver(ctx, "r", []string{"a", "b", "c"}, t0); !ok {
			t.Fatal("a pruned delivery is refused")
		}
	})
}
