package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/promtest"
	"github.com/jobrun/jobrun/internal/testenv"
)

// webJobs is the run the browser watches: prepare (coloured output and an
// artifact), a matrix that needs it, and talk, which prints, sleeps,
// prints and then sleeps until cancelled.
const webJobs = `
job "prepare" {
  image = "IMAGE"
  step "make" { run = "printf '\\033[32mready\\033[0m <b>not bold</b>\\n'; mkdir -p out; echo artifact > out/a.txt" }
  artifacts { paths = ["out/**"] }
}
job "check" {
  image = "IMAGE"
  needs = ["prepare"]
  matrix { n = ["1", "2"] }
  step "check" { run = "echo check ${matrix.n}" }
}
job "talk" {
  image = "IMAGE"
  needs = ["prepare"]
  step "talk" { run = "echo first-line; sleep 8; echo second-line; sleep 600" }
}
`

// TestWebUIBrowser runs the real jobrun server and agent, and drives the
// web UI with headless Chromium: the runs page, the run's graph, a job's
// log arriving live over server-sent events, sign-in and cancel. Each
// page is saved as a screenshot in the test's temp dir (and, when
// JOBRUN_WEB_SCREENSHOTS names a directory, there too). The server's and
// the agent's metrics are scraped and parsed.
func TestWebUIBrowser(t *testing.T) {
	image := busybox(t)
	chromium := testenv.RequireTool(t, "chromium")
	bin := buildJobrun(t)
	shots := t.TempDir()
	keep := os.Getenv("JOBRUN_WEB_SCREENSHOTS")

	const adminToken, regToken = "web-admin-token", "web-reg-token"
	srv, addr := startDaemon(t, bin, regexp.MustCompile(`server listening on (\S+)`),
		"--state-dir", t.TempDir(), "server", "--listen", "127.0.0.1:0",
		"--admin-token", adminToken, "--registration-token", regToken, "--lease-timeout", "5s",
		"--metrics-listen", "127.0.0.1:0")
	base := "http://" + addr
	serverMetrics := regexp.MustCompile(`metrics on http://(\S+)/metrics`).FindStringSubmatch(srv.log())
	h := newTestHost(t)
	agent, metricsAddr := startDaemon(t, bin, regexp.MustCompile(`metrics listening on (\S+)`),
		"--state-dir", h.state, "agent", "--server", base, "--token", regToken, "--name", "web-agent",
		"--labels", "linux", "--jobs", "2", "--metrics-listen", "127.0.0.1:0")

	ctx := context.Background()
	c := &api.Client{Base: base, Token: adminToken}
	run, err := c.CreateRun(ctx, api.NewRun{Repo: "example.com/web", Branch: "main", Commit: "c0ffee0123456789",
		Source: strings.ReplaceAll(webJobs, "IMAGE", image)})
	if err != nil {
		t.Fatal(err)
	}
	jobID := map[string]int64{}
	for _, j := range run.Jobs {
		jobID[j.Name] = j.ID
	}
	waitJob := func(name string, ok func(*api.Job) bool) *api.Job {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			j, err := c.Job(ctx, jobID[name])
			if err != nil {
				t.Fatal(err)
			}
			if ok(j) {
				return j
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s stuck in %s (%s)\nserver:\n%s\nagent:\n%s", name, j.Status, j.Reason, srv.log(), agent.log())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// The browser, with its profile and its home (crash report settings,
	// dconf) in the test's temp dir. The first action starts it; it
	// lives as long as bctx.
	home := t.TempDir()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(filepath.Join(home, "profile")), chromedp.WindowSize(1280, 900),
		chromedp.Env("HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "XDG_CACHE_HOME="+filepath.Join(home, ".cache")))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	browser := chromedp.FromContext(bctx).Browser.Process()
	defer func() {
		// Nothing of the browser may outlive the test.
		cctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Cancel(cctx); err != nil {
			t.Logf("close chromium: %v", err)
		}
		cancelBrowser()
		cancelAlloc()
		if browser != nil {
			if err := browser.Signal(syscall.Signal(0)); err == nil {
				t.Errorf("chromium (pid %d) still runs after the test", browser.Pid)
			}
		}
	}()

	fail := func(what string, err error) {
		t.Helper()
		t.Fatalf("%s: %v\nserver:\n%s\nagent:\n%s", what, err, srv.log(), agent.log())
	}
	// do runs browser steps, each batch within 90 seconds.
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 90*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			fail(what, err)
		}
	}
	// js evaluates a boolean expression in the page.
	js := func(expr string) bool {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(sctx, chromedp.Evaluate[bool](expr))
		if err != nil {
			fail("evaluate "+expr, err)
		}
		return v
	}
	// until waits for a boolean expression to become true in the page,
	// across reloads (the page reloads itself when a job ends).
	until := func(what, expr string, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		var last error
		for time.Now().Before(deadline) {
			sctx, cancel := context.WithTimeout(bctx, 10*time.Second)
			v, err := chromedp.Run(sctx, chromedp.Evaluate[bool](expr))
			cancel()
			if err == nil && v {
				return
			}
			last = err
			time.Sleep(100 * time.Millisecond)
		}
		fail(what, fmt.Errorf("not true after %s: %s (last error: %v)", d, expr, last))
	}
	shot := func(name string) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			fail("screenshot "+name, err)
		}
		p := filepath.Join(shots, name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", p)
		if keep != "" {
			k := filepath.Join(keep, name+".png")
			if err := os.MkdirAll(keep, 0o755); err == nil {
				os.WriteFile(k, png, 0o644)
				t.Logf("screenshot kept as %s", k)
			}
		}
	}

	// The job that talks runs once prepare has succeeded.
	waitJob("talk", func(j *api.Job) bool { return j.Status == api.Running })

	// The pages need a token: the browser is sent to sign in, and signs
	// in with one of the read role.
	reader, err := c.AddToken(ctx, api.NewToken{Name: "browser", Role: api.RoleRead})
	if err != nil {
		t.Fatal(err)
	}
	do("sign in to read",
		chromedp.Navigate(fmt.Sprintf("%s/jobs/%d", base, jobID["talk"])),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), reader.Secret),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("log")))

	// The job page, opened while talk sleeps between its two lines: the
	// second arrives over the event stream without a reload.
	do("open the job page",
		chromedp.Navigate(fmt.Sprintf("%s/jobs/%d", base, jobID["talk"])),
		chromedp.WaitVisible(chromedp.ID("log")))
	js(`(window.__notReloaded = true)`)
	until("first line", `document.getElementById("log").textContent.includes("first-line")`, 30*time.Second)
	if js(`document.getElementById("log").textContent.includes("second-line")`) {
		t.Fatal("second-line was already there when the page loaded; cannot see it arrive live")
	}
	until("a line arriving live", `document.getElementById("log").textContent.includes("second-line")`, 30*time.Second)
	if !js(`window.__notReloaded === true`) {
		t.Fatal("the page reloaded to show the new line; it should have streamed it")
	}
	if !js(`!!document.querySelector('#log .l a[href^="#L"]') && document.querySelectorAll('#log .l').length >= 3`) {
		t.Fatal("log lines lack their #L anchors")
	}
	if js(`!!document.getElementById("cancel")`) {
		t.Fatal("a cancel button for the read role")
	}
	shot("job-live")

	// A phone-sized view of the same page.
	do("phone view", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	shot("job-phone")
	do("desktop view", chromedp.EmulateViewport(1280, 900))

	// The run as a graph, and the list of runs.
	do("open the run page", chromedp.Navigate(fmt.Sprintf("%s/runs/%d", base, run.ID)), chromedp.WaitVisible(chromedp.CSS(".graph svg")))
	if !js(`[...document.querySelectorAll(".graph text")].map(e => e.textContent).join("|").includes("n=1")`) {
		t.Fatal("the graph lacks the matrix combinations")
	}
	shot("run")
	do("open the runs page", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("table.runs")))
	if !js(`document.body.textContent.includes("example.com/web")`) {
		t.Fatal("the runs page lacks the repository")
	}
	shot("runs")

	// prepare: its ANSI colour rendered, its markup escaped, its artifact,
	// and the line its URL names highlighted.
	waitJob("prepare", func(j *api.Job) bool { return api.Final(j.Status) })
	do("open prepare", chromedp.Navigate(fmt.Sprintf("%s/jobs/%d#L3", base, jobID["prepare"])), chromedp.WaitVisible(chromedp.CSS("table.artifacts")))
	if !js(`[...document.querySelectorAll("#log .f2")].some(e => e.textContent === "ready")`) {
		t.Fatal("the green ANSI text is not a .f2 span")
	}
	if !js(`document.querySelectorAll("#log b").length === 0 && document.getElementById("log").textContent.includes("<b>not bold</b>")`) {
		t.Fatal("the log's markup was not escaped")
	}
	until("line 3 highlighted", `document.getElementById("L3") && document.getElementById("L3").classList.contains("hl")`, 10*time.Second)
	if !js(`[...document.querySelectorAll("table.artifacts a")].some(a => a.textContent === "out/a.txt")`) {
		t.Fatal("the artifact is not listed")
	}
	shot("job-finished")

	do("open the agents page", chromedp.Navigate(base+"/agents"), chromedp.WaitVisible(chromedp.CSS("table.agents")))
	if !js(`document.querySelector("table.agents").textContent.includes("web-agent")`) {
		t.Fatal("the agents page lacks the agent")
	}
	shot("agents")

	// Sign in with the admin token and cancel talk.
	do("sign in",
		chromedp.Navigate(fmt.Sprintf("%s/login?next=/jobs/%d", base, jobID["talk"])),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), adminToken),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("cancel")))
	shot("job-signed-in")
	do("cancel", chromedp.Click(chromedp.ID("cancel")))
	until("the job cancelled", `!!document.getElementById("status") && document.getElementById("status").textContent === "cancelled"`, 60*time.Second)
	until("retry offered", `!!document.getElementById("retry") && !document.getElementById("cancel")`, 10*time.Second)
	shot("job-cancelled")
	if j := waitJob("talk", func(j *api.Job) bool { return api.Final(j.Status) }); j.Status != api.Cancelled {
		t.Fatalf("talk ended %s, want cancelled", j.Status)
	}

	// The server's metrics.
	fams := promtest.ScrapeToken(t, base+"/metrics", reader.Secret)
	if serverMetrics == nil {
		t.Fatalf("the server did not say where --metrics-listen serves:\n%s", srv.log())
	}
	if open := promtest.Scrape(t, "http://"+serverMetrics[1]+"/metrics"); len(open) != len(fams) {
		t.Errorf("--metrics-listen serves %d families, /metrics with a token %d", len(open), len(fams))
	}
	if v := promtest.Sample(t, fams, "jobrun_agents_online", nil).GetGauge().GetValue(); v != 1 {
		t.Errorf("jobrun_agents_online = %v, want 1", v)
	}
	if n := promtest.Sample(t, fams, "jobrun_job_duration_seconds", map[string]string{"result": "cancelled"}).GetHistogram().GetSampleCount(); n != 1 {
		t.Errorf("cancelled jobs: %d, want 1", n)
	}
	if n := promtest.Sample(t, fams, "jobrun_job_duration_seconds", map[string]string{"result": "succeeded"}).GetHistogram().GetSampleCount(); n < 1 {
		t.Errorf("succeeded jobs: %d, want at least 1", n)
	}
	if v := promtest.Sample(t, fams, "jobrun_artifact_bytes_total", nil).GetCounter().GetValue(); v != float64(len("artifact\n")) {
		t.Errorf("artifact bytes %v, want %d", v, len("artifact\n"))
	}
	// The agent's.
	fams = promtest.Scrape(t, "http://"+metricsAddr+"/metrics")
	if v := promtest.Sample(t, fams, "jobrun_agent_running_jobs", nil).GetGauge().GetValue(); v != 0 {
		t.Errorf("agent running jobs %v after the run, want 0", v)
	}
	if n := promtest.Sample(t, fams, "jobrun_agent_jobs_total", map[string]string{"result": "cancelled"}).GetCounter().GetValue(); n != 1 {
		t.Errorf("agent cancelled jobs %v, want 1", n)
	}
	if n := promtest.Sample(t, fams, "jobrun_agent_image_pulls_total", map[string]string{"source": "layout", "result": "ok"}).GetCounter().GetValue(); n < 1 {
		t.Errorf("agent image fetches from the layout: %v, want at least 1", n)
	}
	if n := promtest.Sample(t, fams, "jobrun_agent_image_unpack_seconds", nil).GetHistogram().GetSampleCount(); n < 1 {
		t.Errorf("agent layer unpacks: %d, want at least 1 (a fresh state dir)", n)
	}
	t.Logf("screenshots in %s", shots)
}
