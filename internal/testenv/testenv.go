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
	"strings"
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

// InstallHelpers builds the two helper binaries of package sandbox into
// dir with BuildHelpers and puts dir first on PATH, where sandbox.New
// finds them. TestMain of every test binary that starts containers calls
// it; the caller removes dir.
func InstallHelpers(dir string) error {
	if err := BuildHelpers(dir); err != nil {
		return err
	}
	return os.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// BuildHelpers builds the two helper binaries of package sandbox into dir
// with scripts/helpers.sh, as `make build` does: jobrun-launcher, the
// static init of job containers (a C program), and jobrun-starter, which
// starts them. A lane that cannot afford the build where it runs (the
// qemu guest of `make test-vm`) builds them once beforehand and names their
// directory in JOBRUN_TEST_HELPERS; they are copied from there.
func BuildHelpers(dir string) error {
	if pre := os.Getenv(HelpersEnv); pre != "" {
		return copyHelpers(pre, dir)
	}
	mod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("build helpers: find the module: %w", err)
	}
	script := filepath.Join(filepath.Dir(strings.TrimSpace(string(mod))), "scripts", "helpers.sh")
	build := exec.Command("bash", script, dir)
	build.Env = append(os.Environ(), "CC="+CCompiler())
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build helpers (%s): %v\n%s", script, err, out)
	}
	return nil
}

// CCompiler returns the C compiler the launcher is built with: the one
// cgo uses (`go env CC`), as scripts/helpers.sh uses $CC, else cc.
func CCompiler() string {
	if out, err := exec.Command("go", "env", "CC").Output(); err == nil {
		if cc := strings.TrimSpace(string(out)); cc != "" {
			return cc
		}
	}
	return "cc"
}

// RequireCC skips t unless the C compiler (CCompiler) is on PATH, and
// returns it.
func RequireCC(t testing.TB) string {
	t.Helper()
	cc := CCompiler()
	if _, err := exec.LookPath(strings.Fields(cc)[0]); err != nil {
		t.Skipf("needs a C compiler (%s) to build jobrun-launcher: `make test` installs gcc (scripts/deps.sh)", cc)
	}
	return cc
}

// HelpersEnv names a directory of helpers built beforehand by
// scripts/helpers.sh, which BuildHelpers copies instead of building.
const HelpersEnv = "JOBRUN_TEST_HELPERS"

func copyHelpers(from, to string) error {
	if err := os.MkdirAll(to, 0o755); err != nil {
		return err
	}
	for _, name := range []string{"jobrun-launcher", "jobrun-starter"} {
		b, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			return fmt.Errorf("helpers from %s=%s: %w", HelpersEnv, from, err)
		}
		if err := os.WriteFile(filepath.Join(to, name), b, 0o755); err != nil {
			return fmt.Errorf("helpers from %s=%s: %w", HelpersEnv, from, err)
		}
	}
	return nil
}
