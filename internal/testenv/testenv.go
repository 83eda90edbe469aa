// Package testenv holds the checks tests use to say what they need. A test
// that cannot run skips with a message naming what is missing; under CI
// (CI=true) the test runner turns every skip into a failure, so a missing
// root, service or tool never passes as green.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireRoot skips t unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, mounts and cgroups): run `make test` as root")
	}
}

// RequireTool skips t unless name is on PATH, and returns its path.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("needs %s on PATH: `make test` installs it (scripts/deps.sh)", name)
	}
	return p
}

// RequireEnv skips t unless the environment variable key is set, and returns
// its value. what says which service the variable points at.
func RequireEnv(t testing.TB, key, what string) string {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		t.Skipf("needs %s (%s): `make test` starts it and sets the variable", what, key)
	}
	return v
}

// InstallHelpers builds the two helper binaries of package sandbox, as
// `make build` (scripts/helpers.sh) does, into dir and puts dir first on
// PATH, where sandbox.New finds them: jobrun-launcher, the static init of
// job containers, and jobrun-starter, which starts them. TestMain of every
// test binary that starts containers calls it; the caller removes dir.
func InstallHelpers(dir string) error {
	for _, b := range []struct{ name, pkg, cgo string }{
		{"jobrun-launcher", "github.com/jobrun/jobrun/agent/sandbox/launcher", "0"},
		{"jobrun-starter", "github.com/jobrun/jobrun/agent/sandbox/starter", "1"},
	} {
		build := exec.Command("go", "build", "-tags", "seccomp", "-o", filepath.Join(dir, b.name), b.pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED="+b.cgo)
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", b.name, err, out)
		}
	}
	return os.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}
