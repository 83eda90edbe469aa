package scheduler

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
	"github.com/jobrun/jobrun/internal/promtest"
)

const matrixJobs = `
job "build" {
  image = "busybox"
  matrix { goos = ["linux", "windows"] }
  step "compile" { run = "true" }
}
job "test" {
  image = "busybox"
  needs = ["build"]
  step "t" { run = "true" }
}
`

// logLines is JSON lines of api.LogLine, as an agent uploads them.
func logLines(t *testing.T, ls ...api.LogLine) []byte {
	t.Helper()
	var b []byte
	for _, l := range ls {
		if l.Time.IsZero() {
			l.Time = time.Now()
		}
		j, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		b = append(append(b, j...), '\n')
	}
	return b
}

// get fetches a page and returns its status and body.
func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func mustContain(t *testing.T, what, body string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(body, s) {
			t.Fatalf("%s lacks %q:\n%s", what, s, body)
		}
	}
}

// TestWebPages drives the web UI over a real store as a browser without
// JavaScript would, with an agent speaking the real protocol: the runs,
// the graph, a job with escaped ANSI output, its live log events,
// artifacts, the agents, then sign-in, CSRF and cancel.
func TestWebPages(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) { webPages(t, open()) })
}

func webPages(t *testing.T, st Store) {
	base := serve(t, st, nil)
	ctx := context.Background()
	// The pages are read signed in with a token of the read role.
	readTok := withRole(t, base, api.RoleRead).Token
	hc := signIn(t, base, readTok)
	anon := &http.Client{CheckRedirect: hc.CheckRedirect}

	run, err := admin(base).CreateRun(ctx, api.NewRun{Repo: "github.com/acme/app", Branch: "feature/<b>", Source: matrixJobs, Commit: "0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	ag, reg := register(t, base, "builder-1", 2, "linux")
	l, err := ag.Lease(ctx, reg.ID, 0)
	if err != nil || l == nil {
		t.Fatalf("lease: %v %v", l, err)
	}
	at := l.Attempt
	if err := ag.Step(ctx, at, api.Step{Index: 0, Name: "compile", Status: api.StepRunning, Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	first := logLines(t,
		api.LogLine{Kind: "notice", Text: "image busybox"},
		api.LogLine{Kind: "step", Step: "compile", Text: "compile"},
		api.LogLine{Kind: "out", Step: "compile", Stream: "stdout", Text: "\x1b[1;31mred <script>alert(1)</script>\x1b[0m plain"},
	)
	if _, err := ag.AppendLog(ctx, at, 0, first); err != nil {
		t.Fatal(err)
	}

	code, body := get(t, hc, base+"/")
	if code != 200 {
		t.Fatalf("runs page: %d\n%s", code, body)
	}
	mustContain(t, "runs page", body, "github.com/acme/app", "feature/&lt;b&gt;", fmt.Sprintf(`href="/runs/%d"`, run.ID), "0123456789", "st-running")

	code, body = get(t, hc, fmt.Sprintf("%s/runs/%d", base, run.ID))
	if code != 200 {
		t.Fatalf("run page: %d\n%s", code, body)
	}
	mustContain(t, "run page", body, "<svg", ">build</text>", ">goos=linux</text>", ">goos=windows</text>", ">test</text>", `class="edge`)

	code, body = get(t, hc, fmt.Sprintf("%s/jobs/%d", base, at.Job))
	if code != 200 {
		t.Fatalf("job page: %d\n%s", code, body)
	}
	mustContain(t, "job page", body, `id="L3"`, `href="#L3"`, `<span class="b f1">red &lt;script&gt;alert(1)&lt;/script&gt;</span> plain`, "data-follow=", "compile")
	if strings.Contains(body, "<script>alert") {
		t.Fatal("the log's text reached the page as markup")
	}
	if strings.Contains(body, `id="cancel"`) {
		t.Fatal("a cancel button for the read role")
	}
	follow := regexp.MustCompile(`data-follow="([^"]+)"`).FindStringSubmatch(body)[1]
	follow = strings.ReplaceAll(follow, "&amp;", "&")

	// The live log: the stream sends a line appended after the page was
	// made, then the end.
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(sctx, "GET", base+follow, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("events: content type %q", ct)
	}
	events := make(chan [2]string, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		var name, data string
		for sc.Scan() {
			switch line := sc.Text(); {
			case strings.HasPrefix(line, "event: "):
				name = line[7:]
			case strings.HasPrefix(line, "data: "):
				data += line[6:]
			case line == "":
				if name != "" {
					events <- [2]string{name, data}
				}
				name, data = "", ""
			}
		}
	}()
	second := logLines(t, api.LogLine{Kind: "out", Step: "compile", Stream: "stderr", Text: "second line"})
	if _, err := ag.AppendLog(ctx, at, int64(len(first)), second); err != nil {
		t.Fatal(err)
	}
	ev := <-events
	if ev[0] != "lines" || !strings.Contains(ev[1], `id="L4"`) || !strings.Contains(ev[1], "second line") || !strings.Contains(ev[1], " err") {
		t.Fatalf("first event %q, want the 4th line", ev)
	}

	// Artifacts, then the attempt ends.
	data := "hello artifact\n"
	if err := ag.PutArtifact(ctx, at, "out/hello.txt", strings.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(data))
	m := artifacts.Manifest{Created: time.Now(), Files: []artifacts.ManifestFile{{Path: "out/hello.txt", Size: int64(len(data)), Mode: 0o644, SHA256: hex.EncodeToString(sum[:])}}}
	if err := ag.CommitArtifacts(ctx, at, m); err != nil {
		t.Fatal(err)
	}
	if err := ag.Step(ctx, at, api.Step{Index: 0, Name: "compile", Status: api.Failed, Started: time.Now(), Duration: api.Duration(1500 * time.Millisecond), Exit: "exit code 2"}); err != nil {
		t.Fatal(err)
	}
	res := api.Result{Status: api.Failed, Reason: "step compile failed: exit code 2", Duration: api.Duration(2 * time.Second),
		Usage: api.Usage{CPU: api.Duration(700 * time.Millisecond), PeakMemory: 3 << 20, PeakPids: 4}, CacheHits: 1, Caches: 2}
	if err := ag.Finish(ctx, at, res); err != nil {
		t.Fatal(err)
	}
	sawSteps := false
	for ev = range events {
		if ev[0] == "steps" && strings.Contains(ev[1], "exit code 2") {
			sawSteps = true
		}
		if ev[0] == "end" {
			break
		}
	}
	if !sawSteps {
		t.Fatal("no steps event with the failed step")
	}
	if ev[0] != "end" || ev[1] != api.Failed {
		t.Fatalf("last event %q, want end with the job's status", ev)
	}

	code, body = get(t, hc, fmt.Sprintf("%s/jobs/%d", base, at.Job))
	if code != 200 {
		t.Fatalf("job page: %d\n%s", code, body)
	}
	mustContain(t, "finished job page", body, ">builder-1</dd>", "exit code 2", "step compile failed: exit code 2", "3 MiB", "700ms", "1 of 2 warm",
		fmt.Sprintf(`href="/jobs/%d/attempts/1/artifacts/out/hello.txt"`, at.Job), "15 B", `id="L4"`)
	if strings.Contains(body, "data-follow") {
		t.Fatal("a finished job's page still follows its log")
	}
	code, body = get(t, hc, fmt.Sprintf("%s/jobs/%d/attempts/1/artifacts/out/hello.txt", base, at.Job))
	if code != 200 || body != data {
		t.Fatalf("artifact download: %d %q", code, body)
	}

	code, body = get(t, hc, base+"/agents")
	if code != 200 {
		t.Fatalf("agents page: %d", code)
	}
	mustContain(t, "agents page", body, "builder-1", ">linux<", "online", "0/2")

	if code, _ = get(t, hc, base+"/jobs/999999"); code != 404 {
		t.Fatalf("a missing job: %d, want 404", code)
	}

	// Cancel: refused without a session, with a wrong token, and
	// without the CSRF token; done with all three (the positive control).
	var queued int64
	r, err := admin(base).Run(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range r.Jobs {
		if j.Status == api.Queued {
			queued = j.ID
		}
	}
	if queued == 0 {
		t.Fatalf("no queued job in %+v", r.Jobs)
	}
	cancelURL := fmt.Sprintf("%s/jobs/%d/cancel", base, queued)
	post := func(c *http.Client, u string, form url.Values) int {
		t.Helper()
		resp, err := c.PostForm(u, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(anon, cancelURL, url.Values{}); code != 401 {
		t.Fatalf("cancel without signing in: %d, want 401", code)
	}
	_, body = get(t, hc, fmt.Sprintf("%s/jobs/%d", base, queued))
	readCSRF := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(body)[1]
	if code := post(hc, cancelURL, url.Values{"csrf": {readCSRF}}); code != 403 {
		t.Fatalf("cancel signed in with the read role: %d, want 403", code)
	}
	jar, _ := cookiejar.New(nil)
	user := &http.Client{Jar: jar, CheckRedirect: hc.CheckRedirect}
	if code := post(user, base+"/login", url.Values{"token": {"wrong"}}); code != 401 {
		t.Fatalf("sign in with a wrong token: %d, want 401", code)
	}
	resp, err = user.PostForm(base+"/login", url.Values{"token": {adminToken}, "next": {"//evil.example/"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/" {
		t.Fatalf("sign in: %s to %q, want 303 to / (not to another site)", resp.Status, resp.Header.Get("Location"))
	}
	if c := resp.Header.Get("Set-Cookie"); !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Strict") || strings.Contains(c, adminToken) {
		t.Fatalf("session cookie %q: want HttpOnly, SameSite=Strict, and not the token itself", c)
	}
	_, body = get(t, user, fmt.Sprintf("%s/jobs/%d", base, queued))
	mustContain(t, "job page signed in", body, `id="cancel"`)
	csrf := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(body)[1]
	wrong := "0" + csrf[1:]
	if csrf[0] == '0' {
		wrong = "1" + csrf[1:] // the session's CSRF token is random
	}
	if code := post(user, cancelURL, url.Values{"csrf": {wrong}}); code != 403 {
		t.Fatalf("cancel with a wrong CSRF token: %d, want 403", code)
	}
	req, _ = http.NewRequest("POST", cancelURL, strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	resp, err = user.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("cancel from another site's page: %s, want 403", resp.Status)
	}
	if code := post(user, cancelURL, url.Values{"csrf": {csrf}}); code != 303 {
		t.Fatalf("cancel: %d, want 303", code)
	}
	j, err := admin(base).Job(ctx, queued)
	if err != nil || j.Status != api.Cancelled {
		t.Fatalf("job after cancel: %+v %v", j, err)
	}
	if code := post(user, fmt.Sprintf("%s/jobs/%d/retry", base, queued), url.Values{"csrf": {csrf}}); code != 303 {
		t.Fatalf("retry: %d, want 303", code)
	}
	if j, _ = admin(base).Job(ctx, queued); j.Status != api.Queued {
		t.Fatalf("job after retry: %s", j.Status)
	}

	// The metrics, parsed as Prometheus parses them.
	fams := promtest.ScrapeToken(t, base+"/metrics", readTok)
	gauge(t, fams, "jobrun_agents_online", nil, 1)
	gauge(t, fams, "jobrun_agent_slots", nil, 2)
	gauge(t, fams, "jobrun_agent_slots_busy", nil, 0)
	gauge(t, fams, "jobrun_queue_depth", map[string]string{"labels": ""}, 1)
	gauge(t, fams, "jobrun_artifact_bytes_total", nil, float64(len(data)))
	gauge(t, fams, "jobrun_cache_hits_total", nil, 1)
	gauge(t, fams, "jobrun_cache_lookups_total", nil, 2)
	h := promtest.Sample(t, fams, "jobrun_job_duration_seconds", map[string]string{"result": api.Failed}).GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() != 2 {
		t.Fatalf("job duration: %d samples, sum %v; want 1, 2", h.GetSampleCount(), h.GetSampleSum())
	}
	if n := promtest.Sample(t, fams, "jobrun_queue_wait_seconds", map[string]string{"labels": ""}).GetHistogram().GetSampleCount(); n != 1 {
		t.Fatalf("queue wait: %d samples, want 1", n)
	}
}

// signIn signs a browser in with token and returns it; it does not
// follow redirects.
func signIn(t *testing.T, base, token string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(base+"/login", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %s, want 303", resp.Status)
	}
	return c
}

// gauge checks a gauge's or counter's value.
func gauge(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string, want float64) {
	t.Helper()
	m := promtest.Sample(t, fams, name, labels)
	got := m.GetGauge().GetValue() + m.GetCounter().GetValue()
	if got != want {
		t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
	}
}
