package bench_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/testenv"
)

// services runs scripts/services.sh with args and the given PATH.
func services(path string, args ...string) ([]byte, error) {
	cmd := exec.Command("../scripts/services.sh", args...)
	cmd.Env = append(os.Environ(), "PATH="+path)
	return cmd.CombinedOutput()
}

// procsUnder lists the command lines of running processes that name dir.
func procsUnder(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if cl := strings.ReplaceAll(string(b), "\x00", " "); strings.Contains(cl, dir) {
			out = append(out, cl)
		}
	}
	return out
}

func requireServiceTools(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	for _, tool := range []string{"minio", "docker-registry", "psql", "runuser"} {
		testenv.RequireTool(t, tool)
	}
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) == 0 {
		t.Skip("needs PostgreSQL's server: `make test` installs it (scripts/deps.sh)")
	}
}

// TestServicesUnderClosedParent starts the services in a directory whose
// parent the postgres user cannot enter (as a mktemp -d directory is): they
// must start, PostgreSQL with its data elsewhere, and stop leaves no
// process and no data behind. The control is a parent it can enter, where
// the data stays in DIR/pg.
func TestServicesUnderClosedParent(t *testing.T) {
	requireServiceTools(t)
	for _, tc := range []struct {
		name   string
		mode   os.FileMode
		inside bool // PostgreSQL's data in DIR/pg
	}{{"closed", 0o700, false}, {"open", 0o755, true}} {
		t.Run(tc.name, func(t *testing.T) {
			parent, err := os.MkdirTemp("/tmp", "jobrun-test-services-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(parent)
			if err := os.Chmod(parent, tc.mode); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(parent, "svc")
			if b, err := services(os.Getenv("PATH"), "start", dir); err != nil {
				t.Fatalf("services.sh start %s: %v\n%s", dir, err, b)
			}
			stopped := false
			defer func() {
				if !stopped {
					services(os.Getenv("PATH"), "stop", dir)
				}
			}()
			env, err := os.ReadFile(filepath.Join(dir, "env"))
			if err != nil {
				t.Fatal(err)
			}
			var pg string
			for _, l := range strings.Split(string(env), "\n") {
				if v, ok := strings.CutPrefix(l, "export JOBRUN_TEST_POSTGRES="); ok {
					pg = v
				}
			}
			if pg == "" {
				t.Fatalf("env has no JOBRUN_TEST_POSTGRES:\n%s", env)
			}
			out, err := exec.Command("psql", pg, "-Atc", "SELECT 40 + 2").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "42" {
				t.Fatalf("psql %s: %v: %s", pg, err, out)
			}
			b, err := os.ReadFile(filepath.Join(dir, "pg.dir"))
			if err != nil {
				t.Fatal(err)
			}
			data := strings.TrimSpace(string(b))
			if got := data == filepath.Join(dir, "pg"); got != tc.inside {
				t.Errorf("PostgreSQL's data in %s; want it in DIR/pg: %v", data, tc.inside)
			}
			if len(procsUnder(t, dir)) == 0 {
				t.Errorf("no running process names %s (MinIO should)", dir)
			}
			b, err = services(os.Getenv("PATH"), "stop", dir)
			stopped = true
			if err != nil {
				t.Fatalf("services.sh stop: %v\n%s", err, b)
			}
			if p := procsUnder(t, dir); len(p) > 0 {
				t.Errorf("processes left after stop: %q", p)
			}
			if p := procsUnder(t, data); len(p) > 0 {
				t.Errorf("PostgreSQL left after stop: %q", p)
			}
			if !tc.inside {
				if _, err := os.Stat(data); !os.IsNotExist(err) {
					t.Errorf("PostgreSQL's data dir %s left after stop (%v)", data, err)
				}
			}
		})
	}
}

// TestServicesStopWhatStartedWhenOneFails makes the registry fail to
// start: services.sh must fail and stop MinIO, which it had started. (The
// control, MinIO running while the services are up, is in
// TestServicesUnderClosedParent.)
func TestServicesStopWhatStartedWhenOneFails(t *testing.T) {
	requireServiceTools(t)
	bin := t.TempDir()
	broken := "#!/bin/sh\necho 'registry: broken for the test' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "docker-registry"), []byte(broken), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "svc")
	path := bin + string(os.PathListSeparator) + os.Getenv("PATH")
	b, err := services(path, "start", dir)
	defer services(path, "stop", dir)
	if err == nil {
		t.Fatalf("services.sh start succeeded with a broken registry:\n%s", b)
	}
	if !strings.Contains(string(b), "registry did not start") {
		t.Errorf("the error does not name the registry:\n%s", b)
	}
	if p := procsUnder(t, dir); len(p) > 0 {
		t.Errorf("processes left after the failed start: %q", p)
	}
}
