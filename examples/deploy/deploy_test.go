// Package deploy_test checks the deployment examples as a user would use
// them: the repository's Dockerfile builds with podman from Debian images
// made on this machine by scripts/testimages.sh (no registry), and the image
// it makes starts jobrun, has every library jobrun loads, runs a real job
// and, as a server and an agent, a pool; the systemd units here pass `systemd-analyze verify` and their
// command lines and environment files name flags jobrun has.
package deploy_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	jobrunapi "github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/testenv"
)

// localRepo names the images this test puts in podman's storage. The base
// images stay there between runs (the next run reuses them); the image the
// test builds is removed when the test ends.
const localRepo = "localhost/jobrun-test"

// repoRoot is the repository root: the Dockerfile's build context.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "Dockerfile")); err != nil {
		t.Fatalf("no Dockerfile at the repository root: %v", err)
	}
	return root
}

// podman runs podman with runc (crun refuses this machine's cgroup v1
// hybrid mode).
type podman struct{ t *testing.T }

// ulimits are what every container gets: podman's defaults raise nofile
// and nproc above the hard limits, which needs CAP_SYS_RESOURCE, and this
// machine's root lacks it.
var ulimits = []string{"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}

func newPodman(t *testing.T) *podman {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "podman")
	testenv.RequireTool(t, "runc")
	return &podman{t: t}
}

// output runs podman with args and returns its combined output.
func (p *podman) output(args ...string) (string, error) {
	cmd := exec.Command("podman", append([]string{"--runtime", "runc"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// must runs podman with args, fails the test if it fails, and returns its
// combined output.
func (p *podman) must(args ...string) string {
	p.t.Helper()
	out, err := p.output(args...)
	if err != nil {
		p.t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// ids lists the full ids of podman's images, containers and volumes.
func (p *podman) ids() []string {
	p.t.Helper()
	var all []string
	for _, q := range [][]string{
		{"images", "--all", "--quiet", "--no-trunc"},
		{"ps", "--all", "--quiet", "--no-trunc"},
		{"volume", "ls", "--quiet"},
	} {
		for _, id := range strings.Fields(p.must(q...)) {
			all = append(all, q[0]+" "+id)
		}
	}
	return all
}

// importLayout copies the image tagged tag in the OCI layout dir into
// podman's storage as name, and removes the image name stood for before if
// this replaced it (a rebuilt test image), so old copies do not pile up.
func (p *podman) importLayout(dir, tag, name string) {
	p.t.Helper()
	old, _ := p.output("image", "inspect", "--format", "{{.Id}}", name)
	cmd := exec.Command("skopeo", "copy", "--quiet", "oci:"+dir+":"+tag, "containers-storage:"+name)
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("import %s:%s as %s: %v\n%s", dir, tag, name, err, out)
	}
	now := strings.TrimSpace(p.must("image", "inspect", "--format", "{{.Id}}", name))
	if old = strings.TrimSpace(old); old != "" && old != now {
		if out, err := p.output("rmi", old); err != nil {
			p.t.Logf("the replaced copy of %s stays (in use?): %v\n%s", name, err, out)
		}
	}
}

func randomSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// goProxy makes sure the host's module cache holds every module the build
// needs and returns the GOPROXY the build uses: the cache's download
// directory (mounted at mnt), then the host's GOPROXY for anything missing.
func goProxy(t *testing.T, root, mnt string) (hostDir, proxy string) {
	t.Helper()
	gobin := testenv.RequireTool(t, "go")
	dl := exec.Command(gobin, "mod", "download")
	dl.Dir = root
	if out, err := dl.CombinedOutput(); err != nil {
		t.Fatalf("go mod download: %v\n%s", err, out)
	}
	env := exec.Command(gobin, "env", "GOMODCACHE", "GOPROXY")
	out, err := env.Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || lines[0] == "" {
		t.Fatalf("go env GOMODCACHE GOPROXY: unexpected output %q", out)
	}
	proxy = "file://" + mnt
	if lines[1] != "" && lines[1] != "off" {
		proxy += "," + lines[1]
	}
	return filepath.Join(lines[0], "cache", "download"), proxy
}

// TestDockerfile builds the Dockerfile with podman from the Debian images
// of scripts/testimages.sh and checks the image: jobrun starts and reports
// the version the build was given, no library is missing (with the control
// that the same probe names one that is), the image is small, a real job
// runs in it with nothing left behind, and a server and an agent from it
// run a job queued through the API and stop cleanly on SIGTERM.
func TestDockerfile(t *testing.T) {
	p := newPodman(t)
	testenv.RequireTool(t, "skopeo")
	buildLayout := testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES_DEBIAN_BUILD", "the debian-build test image of scripts/testimages.sh")
	baseLayout := testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES_DEBIAN", "the debian test image of scripts/testimages.sh")
	busybox := testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES_BUSYBOX", "the busybox test image of scripts/testimages.sh")
	root := repoRoot(t)

	buildImage := localRepo + "/debian-build:latest"
	baseImage := localRepo + "/debian:bookworm"
	p.importLayout(buildLayout, "latest", buildImage)
	p.importLayout(baseLayout, "bookworm", baseImage)

	// Whatever the build and the runs below make must be gone at the end.
	before := p.ids()
	t.Cleanup(func() {
		if left := slices.DeleteFunc(p.ids(), func(id string) bool { return slices.Contains(before, id) }); len(left) > 0 {
			t.Errorf("left in podman's storage: %s", strings.Join(left, ", "))
		}
	})

	const goproxyMnt = "/mnt/jobrun-goproxy"
	modDir, proxy := goProxy(t, root, goproxyMnt)
	suffix := randomSuffix(t)
	image := localRepo + "/jobrun:" + suffix
	version := "deploytest-" + suffix
	// --layers=false: no intermediate images to clean up; the Go module and
	// build caches are the Dockerfile's cache mounts, kept by buildah.
	start := time.Now()
	out, err := p.output(append([]string{"build", "--layers=false", "--pull=never"}, append(ulimits,
		"--build-arg", "BUILD_IMAGE="+buildImage,
		"--build-arg", "BASE_IMAGE="+baseImage,
		"--build-arg", "GOPROXY="+proxy,
		"--build-arg", "VERSION="+version,
		"--volume", modDir+":"+goproxyMnt+":ro",
		"--tag", image,
		root)...)...)
	t.Cleanup(func() {
		if out, err := p.output("rmi", "--force", image); err != nil && !strings.Contains(out, "image not known") {
			t.Errorf("remove %s: %v\n%s", image, err, out)
		}
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(out, 60))
	}
	t.Logf("podman build: %s", time.Since(start).Round(100*time.Millisecond))

	run := func(args ...string) (string, error) {
		return p.output(append(append([]string{"run", "--rm", "--network", "none"}, ulimits...), args...)...)
	}

	t.Run("version", func(t *testing.T) {
		out, err := run(image, "jobrun", "version")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		want := fmt.Sprintf("jobrun %s linux/%s go", version, runtime.GOARCH)
		if !strings.HasPrefix(out, want) {
			t.Errorf("jobrun version in the image printed %q, want it to start with %q (the version given to make build)", out, want)
		}
	})

	t.Run("libraries", func(t *testing.T) {
		// ldd of every program the build stage made: none may miss a library.
		const probe = `for f in /usr/local/bin/*; do echo "== $f"; ldd "$f" 2>&1 || true; done`
		out, err := run(image, "sh", "-c", probe)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if strings.Contains(out, "not found") {
			t.Errorf("a library is missing in the image:\n%s", out)
		}
		if !regexp.MustCompile(`libseccomp\.so\.2 => /`).MatchString(out) {
			t.Errorf("jobrun does not load libseccomp (built without -tags seccomp?):\n%s", out)
		}
		// Control: the same probe, in a container of the image whose
		// libseccomp was deleted, reports the library as missing.
		out, err = run(image, "sh", "-c", `rm -f /lib/*/libseccomp.so.2* /usr/lib/*/libseccomp.so.2* && ldconfig && `+probe)
		if err != nil {
			t.Fatalf("control: %v\n%s", err, out)
		}
		if !strings.Contains(out, "libseccomp.so.2 => not found") {
			t.Errorf("control: with libseccomp deleted, the probe did not report it missing:\n%s", out)
		}
	})

	t.Run("size", func(t *testing.T) {
		size := func(ref string) int64 {
			s := strings.TrimSpace(p.must("image", "inspect", "--format", "{{.Size}}", ref))
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				t.Fatalf("size of %s: %q: %v", ref, s, err)
			}
			return n
		}
		img, base := size(image), size(baseImage)
		t.Logf("image %.1f MB, of which the base %s %.1f MB", float64(img)/1e6, baseImage, float64(base)/1e6)
		// jobrun and its runtime packages are some 50 MB; a Go toolchain,
		// module cache or source tree that slipped into the final stage
		// would be hundreds.
		if added := img - base; added > 100e6 {
			t.Errorf("the runtime stage adds %.1f MB to the base image, want at most 100 MB (only jobrun, bin/ and the runtime packages belong there)", float64(added)/1e6)
		}
	})

	t.Run("job", func(t *testing.T) {
		// The agent's way of running: jobrun in a privileged container with
		// its state dir as a volume, running a job in a container of its
		// own. This uses what the image must ship at run time: libseccomp,
		// the static init of the job's container, the runtime's helpers.
		work := t.TempDir()
		jobDir := filepath.Join(work, "job")
		state := filepath.Join(work, "state")
		arts := filepath.Join(work, "artifacts")
		for _, d := range []string{jobDir, state, arts} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		const hello = "hello from the jobrun image"
		job := `job "hello" {
  image = "oci-layout:/images/busybox:latest"
  step "greet" {
    run = "echo ` + hello + `"
  }
}
`
		if err := os.WriteFile(filepath.Join(jobDir, ".ci.hcl"), []byte(job), 0o644); err != nil {
			t.Fatal(err)
		}
		runJob := func() {
			t.Helper()
			out, err := run("--privileged",
				"--volume", busybox+":/images/busybox:ro",
				"--volume", jobDir+":/job:ro",
				"--volume", state+":/var/lib/jobrun",
				"--volume", arts+":/artifacts",
				image, "jobrun", "local", "--artifacts", "/artifacts", "/job/.ci.hcl")
			if err != nil {
				t.Fatalf("jobrun local in the image: %v\n%s", err, out)
			}
			if !strings.Contains(out, "greet | "+hello) || !strings.Contains(out, "hello job succeeded") {
				t.Fatalf("jobrun local in the image: want the step's output and success, got:\n%s", out)
			}
		}
		// The first run fills the image store; the second must leave the
		// state dir as it found it.
		runJob()
		snap := leakcheck.Take(t, state)
		runJob()
		snap.Check(t)
	})

	t.Run("pool", func(t *testing.T) {
		// The deployment in containers: the server from the image's default
		// command, its API published on a loopback port; an agent from the
		// same image in the server's network namespace (so neither touches
		// the host's network), given its settings through JOBRUN_
		// variables as the units' environment files do. A run queued
		// through the API is leased to the agent and succeeds; SIGTERM
		// (podman stop) ends both with status 0.
		work := t.TempDir()
		serverState, agentState := filepath.Join(work, "server"), filepath.Join(work, "agent")
		for _, d := range []string{serverState, agentState} {
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		port := freePort(t)
		regToken, adminToken := "reg-"+suffix, "admin-"+suffix
		agentName := "deploytest-" + suffix
		detach := func(name string, args ...string) string {
			t.Helper()
			id := strings.TrimSpace(p.must(append(append([]string{"run", "--detach", "--name", name}, ulimits...), args...)...))
			t.Cleanup(func() {
				if out, err := p.output("rm", "--force", "--volumes", id); err != nil {
					t.Errorf("remove container %s: %v\n%s", name, err, out)
				}
			})
			return id
		}
		server := detach("jobrun-deploytest-server-"+suffix,
			"--publish", "127.0.0.1:"+port+":8080",
			"--env", "JOBRUN_SERVER_REGISTRATION_TOKEN="+regToken,
			"--env", "JOBRUN_SERVER_ADMIN_TOKEN="+adminToken,
			"--env", "JOBRUN_LOG_LEVEL=info",
			"--volume", serverState+":/var/lib/jobrun",
			image)
		api := &apiClient{t: t, base: "http://127.0.0.1:" + port, token: adminToken, logs: func() string { return p.logs(server) }}
		api.waitHealthy()

		agent := detach("jobrun-deploytest-agent-"+suffix,
			"--privileged", "--network", "container:"+server,
			"--env", "JOBRUN_AGENT_SERVER=http://127.0.0.1:8080",
			"--env", "JOBRUN_AGENT_TOKEN="+regToken,
			"--env", "JOBRUN_AGENT_LABELS=linux,deploytest",
			"--env", "JOBRUN_AGENT_JOBS=2",
			"--env", "JOBRUN_AGENT_NAME="+agentName,
			"--env", "JOBRUN_LOG_LEVEL=info",
			"--volume", agentState+":/var/lib/jobrun",
			"--volume", busybox+":/images/busybox:ro",
			image, "jobrun", "agent")

		const hello = "hello from the jobrun pool"
		r := api.createRun(jobrunapi.NewRun{Repo: "deploytest", Branch: "main", Source: `job "hello" {
  image   = "oci-layout:/images/busybox:latest"
  agent   = ["deploytest"]
  network = "none"
  step "greet" {
    run = "echo ` + hello + `"
  }
}
`})
		r = api.waitRun(r.ID, func() string { return "agent:\n" + p.logs(agent) + "\nserver:\n" + p.logs(server) })
		if r.Status != jobrunapi.Succeeded || len(r.Jobs) != 1 {
			t.Fatalf("run %d: status %s (%s), %d jobs; want one job succeeded\nagent:\n%s", r.ID, r.Status, r.Reason, len(r.Jobs), p.logs(agent))
		}
		j := r.Jobs[0]
		jobLog := api.get(fmt.Sprintf("/api/v1/jobs/%d/log", j.ID))
		if j.Agent == "" || !strings.Contains(jobLog, hello) {
			t.Errorf("job %d ran on agent %q; its log lacks %q:\n%s", j.ID, j.Agent, hello, jobLog)
		}
		t.Logf("run %d: job %d %s on agent %s", r.ID, j.ID, j.Status, j.Agent)
		if agents := api.get("/api/v1/agents"); !strings.Contains(agents, agentName) {
			t.Errorf("the agent %s is not in the pool: %s", agentName, agents)
		}

		for _, c := range []struct{ name, id string }{{"agent", agent}, {"server", server}} {
			p.must("stop", "--time", "60", c.id)
			if code := strings.TrimSpace(p.must("inspect", "--format", "{{.State.ExitCode}}", c.id)); code != "0" {
				t.Errorf("the %s ended with status %s on SIGTERM, want 0; its log:\n%s", c.name, code, p.logs(c.id))
			}
		}
	})
}

// logs returns a container's output, or why it could not be read.
func (p *podman) logs(id string) string {
	out, err := p.output("logs", id)
	if err != nil {
		return err.Error() + "\n" + out
	}
	return tail(out, 40)
}

// freePort returns a loopback TCP port nobody listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// apiClient speaks to the server in the container as a user would: plain
// HTTP and JSON, the admin token for mutations.
type apiClient struct {
	t     *testing.T
	base  string
	token string
	logs  func() string // the server's log, for failures
}

// serverWait bounds how long the server and the run may take: generous,
// since other tests share the machine; it is a deadline, not a measurement.
const serverWait = 2 * time.Minute

// waitHealthy waits until GET /healthz answers ok.
func (c *apiClient) waitHealthy() {
	c.t.Helper()
	deadline := time.Now().Add(serverWait)
	for {
		resp, err := http.Get(c.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the server in the container did not answer %s/healthz within %s (last: %v)\n%s", c.base, serverWait, err, c.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// do sends a request with the admin token and returns the body; any
// status but want fails the test.
func (c *apiClient) do(method, path string, body any, want int) []byte {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", method, path, err, c.logs())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: %s, want %d: %s\n%s", method, path, resp.Status, want, b, c.logs())
	}
	return b
}

func (c *apiClient) get(path string) string {
	c.t.Helper()
	return string(c.do(http.MethodGet, path, nil, http.StatusOK))
}

func (c *apiClient) createRun(nr jobrunapi.NewRun) jobrunapi.Run {
	c.t.Helper()
	var run jobrunapi.Run
	if err := json.Unmarshal(c.do(http.MethodPost, "/api/v1/runs", nr, http.StatusCreated), &run); err != nil {
		c.t.Fatalf("POST /api/v1/runs: %v", err)
	}
	return run
}

// waitRun polls run id until it has ended.
func (c *apiClient) waitRun(id int64, logs func() string) jobrunapi.Run {
	c.t.Helper()
	deadline := time.Now().Add(serverWait)
	for {
		var run jobrunapi.Run
		if err := json.Unmarshal([]byte(c.get(fmt.Sprintf("/api/v1/runs/%d", id))), &run); err != nil {
			c.t.Fatalf("GET /api/v1/runs/%d: %v", id, err)
		}
		if jobrunapi.Final(run.Status) {
			return run
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("run %d still %s after %s\n%s", id, run.Status, serverWait, logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestUnits checks the systemd units with `systemd-analyze verify` (a
// clean pass prints nothing; the control is a broken copy that must draw
// its complaints), then that their command lines and environment files use
// only flags jobrun has.
func TestUnits(t *testing.T) {
	analyze := testenv.RequireTool(t, "systemd-analyze")
	gobin := testenv.RequireTool(t, "go")
	root := repoRoot(t)
	dir := t.TempDir()

	// verify checks that ExecStart's program exists, so the units are
	// checked as copies that run a jobrun built from this tree.
	jobrun := filepath.Join(dir, "bin", "jobrun")
	build := exec.Command(gobin, "build", "-tags", "seccomp", "-o", jobrun, "./cmd/jobrun")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/jobrun: %v\n%s", err, out)
	}
	const installed = "/usr/local/bin/jobrun"
	units := map[string]string{"jobrun-server.service": "server.env", "jobrun-agent.service": "agent.env"}
	var copies []string
	for unit := range units {
		b, err := os.ReadFile(unit)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte("ExecStart="+installed+" ")) {
			t.Fatalf("%s: ExecStart does not run %s", unit, installed)
		}
		c := filepath.Join(dir, unit)
		if err := os.WriteFile(c, bytes.ReplaceAll(b, []byte(installed), []byte(jobrun)), 0o644); err != nil {
			t.Fatal(err)
		}
		copies = append(copies, c)
	}
	verify := func(paths ...string) (string, error) {
		out, err := exec.Command(analyze, append([]string{"verify"}, paths...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := verify(copies...); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify of the units (ExecStart's program rewritten to %s): err %v, output:\n%s", jobrun, err, out)
	}

	// Control: a misspelt key and a bad value in a copy are reported.
	agent, err := os.ReadFile(filepath.Join(dir, "jobrun-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.NewReplacer("Delegate=yes", "Delegat=yes", "KillMode=mixed", "KillMode=mixd").Replace(string(agent))
	bad := filepath.Join(dir, "broken.service")
	if err := os.WriteFile(bad, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := verify(bad)
	for _, want := range []string{"Delegat", "mixd"} {
		if !strings.Contains(out, want) {
			t.Errorf("control: systemd-analyze verify did not report %q in a broken unit; output:\n%s", want, out)
		}
	}

	for unit, envFile := range units {
		t.Run(unit, func(t *testing.T) {
			args := execStart(t, filepath.Join(dir, unit))
			// The command line parses: with --help, cobra checks every
			// flag and exits 0 without running the command.
			cmd := exec.Command(args[0], append(args[1:], "--help")...)
			help, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %s --help: %v\n%s", unit, strings.Join(args, " "), err, help)
			}
			// The help shows each flag's variable on its line.
			vars := map[string]string{}
			for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+) .*\[env (JOBRUN_[A-Z0-9_]+)\]`).FindAllStringSubmatch(string(help), -1) {
				vars[m[2]] = m[1]
			}
			if len(vars) == 0 {
				t.Fatalf("no flag variables in the help of %s:\n%s", strings.Join(args, " "), help)
			}
			// Every JOBRUN_ variable of the environment file, commented
			// out or not, is the variable of one of the command's flags.
			for _, key := range envKeys(t, envFile) {
				if _, ok := vars[key]; !ok {
					t.Errorf("%s: %s is not the variable of a flag of `%s` (its --help shows none such)", envFile, key, strings.Join(args[1:], " "))
				}
			}
		})
	}
}

// execStart returns the words of a unit's ExecStart line (the units here
// quote nothing).
func execStart(t *testing.T, unit string) []string {
	t.Helper()
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			return strings.Fields(v)
		}
	}
	t.Fatalf("%s: no ExecStart", unit)
	return nil
}

// envKeys returns the JOBRUN_ variables an environment file sets or shows
// commented out.
func envKeys(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var keys []string
	re := regexp.MustCompile(`^#?(JOBRUN_[A-Z0-9_]+)=`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			keys = append(keys, m[1])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatalf("%s sets no JOBRUN_ variable", file)
	}
	return keys
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
