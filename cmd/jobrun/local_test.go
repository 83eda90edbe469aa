package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/testenv"
)

// busybox is the test busybox image as an oci-layout reference.
func busybox(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	dir := testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES", "test images built by scripts/testimages.sh")
	return "oci-layout:" + filepath.Join(dir, "busybox") + ":latest"
}

// project writes a job file (with IMAGE replaced by the busybox image) and
// other files into a new directory, and returns the job file's path.
func project(t *testing.T, ci string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	ci = strings.ReplaceAll(ci, "IMAGE", busybox(t))
	files[".ci.hcl"] = ci
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, ".ci.hcl")
}

type localRun struct {
	out, err string
	code     int
}

// host is a state dir and artifact dir for one test, checked for leaks
// when the test ends.
type testHost struct {
	state, artifacts string
}

func newTestHost(t *testing.T) *testHost {
	t.Helper()
	h := &testHost{state: t.TempDir(), artifacts: t.TempDir()}
	// Images and caches stay by design; everything a job holds must go.
	for _, d := range []string{"snapshots", "work/workspaces", "caches/private", "network"} {
		leaks := leakcheck.Take(t, filepath.Join(h.state, d))
		t.Cleanup(func() { leaks.Check(t) })
	}
	// The containers' runtime state, in memory.
	run, err := sandbox.RunDir(h.state)
	if err != nil {
		t.Fatal(err)
	}
	leaks := leakcheck.Take(t, filepath.Join(run, "runc"), filepath.Join(run, "containers"))
	t.Cleanup(func() { leaks.Check(t) })
	return h
}

func (h *testHost) local(t *testing.T, file string, args ...string) localRun {
	t.Helper()
	var out, errb bytes.Buffer
	argv := append([]string{"--state-dir", h.state, "local", "--artifacts", h.artifacts, file}, args...)
	code := run(context.Background(), argv, &out, &errb)
	t.Logf("jobrun %s: exit %d\n%s%s", strings.Join(argv, " "), code, out.String(), errb.String())
	return localRun{out.String(), errb.String(), code}
}

// order fails t unless each pattern matches the output after the one before.
func order(t *testing.T, out string, patterns ...string) {
	t.Helper()
	pos := 0
	for _, p := range patterns {
		loc := regexp.MustCompile(p).FindStringIndex(out[pos:])
		if loc == nil {
			t.Fatalf("output lacks %q after offset %d", p, pos)
		}
		pos += loc[1]
	}
}

func TestLocalDAGAndMatrix(t *testing.T) {
	file := project(t, `
job "lint" {
  image = "IMAGE"
  step "lint" { run = "echo linted" }
}
job "build" {
  image  = "IMAGE"
  needs  = ["lint"]
  matrix { os = ["linux", "plan9"] }
  env    = { TARGET = "${matrix.os}" }
  step "build" { run = "echo building for $TARGET" }
}
job "ship" {
  image = "IMAGE"
  needs = ["build"]
  step "ship" { run = "echo shipping" }
}
`, map[string]string{})
	h := newTestHost(t)
	r := h.local(t, file, "--parallel", "4")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	order(t, r.out, `lint job succeeded`, `build \(os=linux\) › build \| building for linux`, `ship › ship \| shipping`)
	order(t, r.out, `lint job succeeded`, `build \(os=plan9\) › build \| building for plan9`, `ship job succeeded`)
	order(t, r.out, `JOB +RESULT`, `lint +succeeded`, `build \(os=linux\) +succeeded`, `build \(os=plan9\) +succeeded`, `ship +succeeded`)
}

func TestLocalFailureSkipsDependants(t *testing.T) {
	file := project(t, `
job "test" {
  image = "IMAGE"
  step "test"    { run = "echo testing; exit 4" }
  step "after"   { run = "echo MUST-NOT-RUN" }
  step "cleanup" {
    if  = "always"
    run = "echo cleaning up"
  }
}
job "flaky" {
  image = "IMAGE"
  step "flaky" {
    run           = "exit 1"
    allow_failure = true
  }
  step "next" { run = "echo flaky went on" }
}
job "deploy" {
  image = "IMAGE"
  needs = ["test"]
  step "deploy" { run = "echo MUST-NOT-DEPLOY" }
}
`, map[string]string{})
	h := newTestHost(t)
	r := h.local(t, file)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	if strings.Contains(r.out, "| MUST-NOT") {
		t.Error("a step after a failure, or a dependant of a failed job, ran")
	}
	order(t, r.out, `test › test ■ failed in .*: exit code 4`, `test › cleanup \| cleaning up`)
	order(t, r.out, `flaky › flaky ■ failed .*allowed to fail`, `flaky › next \| flaky went on`, `flaky job succeeded`)
	order(t, r.out, `deploy job skipped.*: needs test failed`)
	order(t, r.out, `deploy +skipped .*needs test failed`)
}

// TestLocalParallel runs two jobs that each wait for the other through a
// shared cache: they finish only if they run at the same time. The control
// runs them one at a time and sees them time out.
func TestLocalParallel(t *testing.T) {
	ci := `
job "ping" {
  image   = "IMAGE"
  timeout = "TIMEOUT"
  cache "meet" { path = "/meet" }
  step "meet" { run = "touch /meet/ping; i=0; until [ -e /meet/pong ]; do sleep 0.1; done; echo met pong" }
}
job "pong" {
  image   = "IMAGE"
  timeout = "TIMEOUT"
  cache "meet" { path = "/meet" }
  step "meet" { run = "touch /meet/pong; until [ -e /meet/ping ]; do sleep 0.1; done; echo met ping" }
}
`
	h := newTestHost(t)
	file := project(t, strings.ReplaceAll(ci, "TIMEOUT", "60s"), map[string]string{})
	if r := h.local(t, file, "--parallel", "2"); r.code != 0 {
		t.Fatalf("parallel jobs did not meet: exit %d", r.code)
	}
	h2 := newTestHost(t)
	file = project(t, strings.ReplaceAll(ci, "TIMEOUT", "2s"), map[string]string{})
	r := h2.local(t, file, "--parallel", "1")
	if r.code != 1 || !strings.Contains(r.out, "timed out after 2s") {
		t.Fatalf("with --parallel 1 the jobs met (exit %d); the parallel test proves nothing", r.code)
	}
}

func TestLocalSecretMasking(t *testing.T) {
	file := project(t, `
job "secret" {
  image   = "IMAGE"
  secrets = ["TOKEN", "KEY"]
  step "leak" { run = "echo token=$TOKEN; printf '%s\\n' \"$KEY\"; echo done" }
}
job "nosy" {
  image = "IMAGE"
  step "look" { run = "echo nosy-token=[$TOKEN]" }
}
`, map[string]string{})
	t.Setenv("JOBRUN_TEST_KEY", "-----BEGIN-----\nline-one-of-key\nline-two-of-key\n-----END-----")
	h := newTestHost(t)
	r := h.local(t, file, "--secret", "TOKEN=hunter2-s3cr3t", "--secret", "KEY=$JOBRUN_TEST_KEY")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	// The control: the step really printed something in those places.
	order(t, r.out, `token=\*\*\*`, `\*\*\*`, `done`)
	// A job that does not name a secret does not get it.
	order(t, r.out, `nosy › look \| nosy-token=\[\]`)
	// A job naming a secret that was not given stops with the reason.
	r = h.local(t, file, "--secret", "TOKEN=x")
	order(t, r.out, `secret +error .*needs secret KEY: pass it with --secret KEY`)
	for _, s := range []string{"hunter2", "line-one-of-key", "line-two-of-key"} {
		if strings.Contains(r.out+r.err, s) {
			t.Errorf("secret %q in the output", s)
		}
	}
}

func TestLocalCacheWarmOnSecondRun(t *testing.T) {
	file := project(t, `
job "deps" {
  image = "IMAGE"
  cache "deps" { path = "/deps" }
  step "fetch" { run = "if [ -e /deps/fetched ]; then echo WARM; else echo COLD; echo x > /deps/fetched; fi" }
}
`, map[string]string{})
	h := newTestHost(t)
	first := h.local(t, file)
	second := h.local(t, file)
	if first.code != 0 || second.code != 0 {
		t.Fatalf("exit %d, %d", first.code, second.code)
	}
	order(t, first.out, `\| COLD`, `deps +succeeded .* 0/1 `)
	order(t, second.out, `\| WARM`, `deps +succeeded .* 1/1 `)
	// --no-cache: an empty, throw-away directory.
	third := h.local(t, file, "--no-cache")
	order(t, third.out, `\| COLD`)
}

func TestLocalArtifactsAndNeeds(t *testing.T) {
	file := project(t, `
job "build" {
  image = "IMAGE"
  step "build" { run = "mkdir -p out && echo binary-v1 > out/app.txt && echo log > out/build.log && ln -s /etc/shadow out/shadow.txt" }
  artifacts { paths = ["out/*.txt"] }
}
job "test" {
  image = "IMAGE"
  needs = ["build"]
  step "test" { run = "cat out/app.txt" }
}
`, map[string]string{})
	h := newTestHost(t)
	r := h.local(t, file)
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	order(t, r.out, `build · artifacts: skipped out/shadow.txt`, `build artifact out/app.txt`, `test › test \| binary-v1`)
	var found []string
	filepath.WalkDir(h.artifacts, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(p, "/out/") {
			found = append(found, strings.TrimPrefix(p, h.artifacts))
		}
		return nil
	})
	if len(found) != 1 || !strings.HasSuffix(found[0], "/build/1/out/app.txt") {
		t.Fatalf("artifact files %q, want only .../build/1/out/app.txt", found)
	}
	b, _ := os.ReadFile(filepath.Join(h.artifacts, found[0]))
	if string(b) != "binary-v1\n" {
		t.Errorf("artifact content %q", b)
	}
	// The job wrote into its workspace; the project directory is untouched.
	if _, err := os.Stat(filepath.Join(filepath.Dir(file), "out")); !os.IsNotExist(err) {
		t.Errorf("the job's files reached the project directory: %v", err)
	}
}

func TestLocalClean(t *testing.T) {
	testenv.RequireTool(t, "git")
	file := project(t, `
job "check" {
  image = "IMAGE"
  step "look" { run = "cat committed; if [ -e dirty ]; then echo SAW-DIRTY; else echo NO-DIRTY; fi" }
}
`, map[string]string{"committed": "in git\n"})
	dir := filepath.Dir(file)
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	os.WriteFile(filepath.Join(dir, "dirty"), []byte("uncommitted"), 0o644)
	h := newTestHost(t)
	clean := h.local(t, file, "--clean")
	order(t, clean.out, `\| in git`, `\| NO-DIRTY`)
	// Control: without --clean the job sees the working tree.
	order(t, h.local(t, file).out, `\| SAW-DIRTY`)
}

// TestLocalInterrupt sends SIGINT to a real jobrun process mid-job: the job
// is cancelled, jobrun exits 1, and nothing is left behind.
func TestLocalInterrupt(t *testing.T) {
	file := project(t, `
job "long" {
  image = "IMAGE"
  step "sleep" { run = "echo sleeping; setsid sleep 300 & sleep 300" }
}
`, map[string]string{})
	bin := buildJobrun(t)
	h := newTestHost(t)
	out := interruptWhen(t, exec.Command(bin, "--state-dir", h.state, "local", "--artifacts", h.artifacts, file), "| sleeping")
	order(t, out, `sleep ■ cancelled`, `long +cancelled`)
}

// buildOnce holds the jobrun binary built for this test run; TestMain
// removes its directory.
var buildOnce struct {
	sync.Once
	dir  string
	path string
	err  error
}

// buildJobrun builds the jobrun binary once per test run, outside the
// state dirs (libcontainer must not find its state root under the binary's
// directory). A lane that built it beforehand (`make test-vm`, whose
// guest is too slow to build) names it in JOBRUN_TEST_JOBRUN; it is
// copied from there.
func buildJobrun(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "jobrun-bin-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.dir = dir
		buildOnce.path = filepath.Join(dir, "jobrun")
		if pre := os.Getenv("JOBRUN_TEST_JOBRUN"); pre != "" {
			b, err := os.ReadFile(pre)
			if err == nil {
				err = os.WriteFile(buildOnce.path, b, 0o755)
			}
			if err != nil {
				buildOnce.err = fmt.Errorf("JOBRUN_TEST_JOBRUN: %w", err)
			}
			return
		}
		out, err := exec.Command("go", "build", "-tags", "seccomp", "-o", buildOnce.path, ".").CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

const failingJob = `
job "broken" {
  image = "IMAGE"
  step "break" { run = "echo state-at-failure > /workspace/marker; exit 9" }
}
`

// TestLocalShellOnFailure answers the shell's prompt through stdin and sees
// the failed job's files in it.
func TestLocalShellOnFailure(t *testing.T) {
	file := project(t, failingJob, map[string]string{})
	bin := buildJobrun(t)
	h := newTestHost(t)
	cmd := exec.Command(bin, "--state-dir", h.state, "local", "--artifacts", h.artifacts, "--shell-on-failure", file)
	cmd.Stdin = strings.NewReader("echo INSIDE-$(cat /workspace/marker)\nexit\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := runChild(t, cmd)
	t.Logf("%s", out.String())
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit %v, want 1", err)
	}
	order(t, out.String(), `broken failed: a shell in its container`, `INSIDE-state-at-failure`, `broken +failed`)
}

// TestLocalKeep enters a kept container with the printed nsenter command,
// then cleans up with Ctrl-C.
func TestLocalKeep(t *testing.T) {
	testenv.RequireTool(t, "nsenter")
	file := project(t, failingJob, map[string]string{})
	bin := buildJobrun(t)
	h := newTestHost(t)
	c := startChild(t, exec.Command(bin, "--state-dir", h.state, "local", "--artifacts", h.artifacts, "--keep", file))
	line := strings.TrimSpace(c.line(t, c.stderr, func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "nsenter ") }))
	args := strings.Fields(line)
	got, err := exec.Command(args[0], append(args[1:len(args)-1], "cat", "/workspace/marker")...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(got)) != "state-at-failure" {
		t.Errorf("%s cat /workspace/marker: %q, %v", line, got, err)
	}
	if err := c.signal(t, syscall.SIGINT); err == nil {
		t.Error("jobrun --keep of a failed job exited 0")
	}
	order(t, c.stdout.String(), `broken +failed`)
}

// TestLocalLimitsAndUnsupported checks that a job's limits reach the summary
// as a cause of death, and that what the agent does not allow (host
// networking, unless its config says so) stops the job with a message
// instead of being ignored.
func TestLocalLimitsAndUnsupported(t *testing.T) {
	file := project(t, `
job "hog" {
  image = "IMAGE"
  resources { memory = "32MiB" }
  step "eat" { run = "head -c 200m /dev/zero | tail > /dev/null" }
}
job "slow" {
  image   = "IMAGE"
  timeout = "1s"
  step "wait" { run = "sleep 30" }
}
job "hostnet" {
  image   = "IMAGE"
  network = "host"
  step "x" { run = "echo MUST-NOT-RUN" }
}
job "ok" {
  image = "IMAGE"
  resources { memory = "32MiB" }
  step "small" { run = "head -c 1m /dev/zero | tail > /dev/null && echo fits" }
}
`, map[string]string{})
	h := newTestHost(t)
	r := h.local(t, file)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	order(t, r.out, `hog +failed .*out of memory \(limit 32 MiB\)`)
	order(t, r.out, `slow +failed .*timed out after 1s`)
	order(t, r.out, `hostnet +error .*network = "host" is not allowed on this agent`)
	order(t, r.out, `ok +succeeded`)
	if strings.Contains(r.out, "| MUST-NOT-RUN") {
		t.Error("a job asking for host networking ran without the agent allowing it")
	}
}

// TestLocalArtifactsExpire: artifacts past their expire_in are swept when
// the next run starts; fresh ones stay.
func TestLocalArtifactsExpire(t *testing.T) {
	ci := `
job "build" {
  image = "IMAGE"
  step "build" { run = "echo x > out.txt" }
  artifacts {
    paths     = ["out.txt"]
    expire_in = "EXPIRE"
  }
}
`
	h := newTestHost(t)
	short := project(t, strings.ReplaceAll(ci, "EXPIRE", "1s"), map[string]string{})
	long := project(t, strings.ReplaceAll(ci, "EXPIRE", "1h"), map[string]string{})
	count := func() int {
		n := 0
		filepath.WalkDir(h.artifacts, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Name() == "out.txt" {
				n++
			}
			return nil
		})
		return n
	}
	if r := h.local(t, short); r.code != 0 || count() != 1 {
		t.Fatalf("exit %d, %d artifact files", r.code, count())
	}
	time.Sleep(1100 * time.Millisecond)
	if r := h.local(t, long); r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	if n := count(); n != 1 {
		t.Errorf("%d artifact files after the sweep, want 1 (the expired one gone, the fresh one kept)", n)
	}
}

// TestLocalServices: a job's service container (busybox httpd, built into
// the test image) is ready before the first step and is reached at
// localhost and by its name; its output is kept apart under "service
// NAME"; it is gone with the job (the host's leak checks).
func TestLocalServices(t *testing.T) {
	file := project(t, `
job "with-web" {
  image = "IMAGE"
  service "web" {
    image   = "IMAGE"
    command = ["sh", "-c", "mkdir -p /www && echo served-by-web > /www/index.html && echo web starting && exec httpd -f -v -p 8080 -h /www"]
    port    = 8080
  }
  step "localhost" { run = "wget -q -O - http://localhost:8080/index.html" }
  step "by-name"   { run = "wget -q -O - http://web:8080/index.html" }
}
job "bad-service" {
  image = "IMAGE"
  service "dies" {
    image   = "IMAGE"
    command = ["sh", "-c", "echo giving up; exit 3"]
    port    = 9
  }
  step "x" { run = "echo MUST-NOT-RUN" }
}
`, map[string]string{})
	h := newTestHost(t)
	r := h.local(t, file)
	if r.code != 1 {
		t.Errorf("exit %d, want 1 (bad-service fails)", r.code)
	}
	order(t, r.out, `with-web .*service web: ready on port 8080`, `with-web › localhost \| served-by-web`, `with-web › by-name \| served-by-web`)
	order(t, r.out, `with-web › service web \| web starting`)
	order(t, r.out, `bad-service › service dies \| giving up`)
	order(t, r.out, `bad-service +error .*service dies: exit code 3 before it accepted connections on port 9`)
	order(t, r.out, `with-web +succeeded`)
	if strings.Contains(r.out, "| MUST-NOT-RUN") {
		t.Error("a job whose service died ran its steps")
	}
}

// TestLocalKilledMidJob kills a real jobrun process (SIGKILL, no teardown)
// while a bridge job with a service runs: its network (namespace, veth,
// rules, lease) is left behind, and the next jobrun on the state dir
// removes it at start-up (the host's leak checks cover links, addresses,
// namespaces and rules).
func TestLocalKilledMidJob(t *testing.T) {
	file := project(t, `
job "long" {
  image = "IMAGE"
  service "web" {
    image   = "IMAGE"
    command = ["httpd", "-f", "-p", "8080", "-h", "/"]
    port    = 8080
  }
  step "sleep" { run = "echo sleeping; sleep 300" }
}
`, map[string]string{})
	bin := buildJobrun(t)
	h := newTestHost(t)
	c := startChild(t, exec.Command(bin, "--state-dir", h.state, "local", "--artifacts", h.artifacts, file))
	c.line(t, c.stdout, has("| sleeping"))
	release := holdStateDir(t, h.state)
	c.signal(t, syscall.SIGKILL)
	left, _ := filepath.Glob(filepath.Join(h.state, "network", "*", "lock"))
	if len(left) == 0 {
		t.Fatal("the killed jobrun left no network behind: the test proves nothing")
	}
	next := project(t, `
job "next" {
  image = "IMAGE"
  step "x" { run = "true" }
}
`, map[string]string{})
	release()
	if r := h.local(t, next); r.code != 0 {
		t.Fatalf("the next run: exit %d", r.code)
	}
	if left, _ := filepath.Glob(filepath.Join(h.state, "network", "*")); len(left) != 0 {
		t.Errorf("the next run's start-up clean-up left %v", left)
	}
}

// TestLocalHostNetworkAllowed is the positive control of the refusal in
// TestLocalLimitsAndUnsupported: with network { allow_host = true } in the
// agent config, the same kind of job runs.
func TestLocalHostNetworkAllowed(t *testing.T) {
	file := project(t, `
job "hostnet" {
  image   = "IMAGE"
  network = "host"
  step "x" { run = "echo ran-with-host-network" }
}
`, map[string]string{})
	cfg := filepath.Join(t.TempDir(), "config.hcl")
	if err := os.WriteFile(cfg, []byte("network {\n  allow_host = true\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newTestHost(t)
	r := h.local(t, file, "--config", cfg)
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	order(t, r.out, `\| ran-with-host-network`, `hostnet +succeeded`)
}
