package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// TestLocalRuns32BitBinary: a job runs a static 32-bit x86 binary, as it
// would under Docker, whose seccomp profile allows the i386 system call
// table on amd64. It used to die of SIGSYS. The control: the same program
// built for this machine runs too.
func TestLocalRuns32BitBinary(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("32-bit x86 compat only exists on amd64, not %s", runtime.GOARCH)
	}
	file := project(t, `
job "compat" {
  image = "IMAGE"
  step "native" { run = "./hello-native" }
  step "i386"   { run = "./hello-386" }
}
`, map[string]string{})
	dir := filepath.Dir(file)
	src := filepath.Join(t.TempDir(), "hello.go")
	if err := os.WriteFile(src, []byte("package main\n\nimport (\n\t\"fmt\"\n\t\"runtime\"\n)\n\nfunc main() { fmt.Println(\"hello from\", runtime.GOARCH) }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for out, arch := range map[string]string{"hello-native": runtime.GOARCH, "hello-386": "386"} {
		build := exec.Command("go", "build", "-o", filepath.Join(dir, out), src)
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH="+arch, "GOFLAGS=")
		if b, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", arch, err, b)
		}
	}
	h := newTestHost(t)
	r := h.local(t, file)
	if r.code != 0 {
		t.Errorf("exit %d, want 0", r.code)
	}
	order(t, r.out, `compat › native \| hello from amd64`, `compat › i386 \| hello from 386`, `compat job succeeded`)
}
