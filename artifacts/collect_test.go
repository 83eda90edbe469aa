package artifacts

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jobrun/jobrun/internal/testenv"
	"golang.org/x/sys/unix"
)

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, mode)
}

// workspace builds a finished job's workspace with regular files, links in
// and out of it, and special files.
func workspace(t *testing.T) string {
	t.Helper()
	ws := t.TempDir()
	write(t, filepath.Join(ws, "bin/app"), "ELF app", 0o755)
	write(t, filepath.Join(ws, "bin/lib/x.so"), "so", 0o644)
	write(t, filepath.Join(ws, "coverage.out"), "mode: set", 0o600)
	write(t, filepath.Join(ws, "src/main.go"), "package main", 0o644)
	must(t, os.Symlink("/etc/shadow", filepath.Join(ws, "bin/shadow")))
	must(t, os.Symlink("/etc", filepath.Join(ws, "etc")))
	must(t, os.Symlink("../coverage.out", filepath.Join(ws, "bin/cov")))
	must(t, syscall.Mkfifo(filepath.Join(ws, "bin/fifo"), 0o644))
	l, err := net.Listen("unix", filepath.Join(ws, "bin/sock"))
	must(t, err)
	t.Cleanup(func() { l.Close() })
	return ws
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func paths(files []File) string {
	var out []string
	for _, f := range files {
		out = append(out, f.Path)
	}
	return strings.Join(out, ",")
}

func skipped(c *Collection) map[string]string {
	out := map[string]string{}
	for _, s := range c.Skipped {
		out[s.Path] = s.Reason
	}
	return out
}

func TestCollectSafe(t *testing.T) {
	ws := workspace(t)
	c, err := Collect(context.Background(), ws, []string{"bin/**", "./coverage.out", "etc/shadow", "etc/**"}, CollectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := paths(c.Files); got != "bin/app,bin/lib/x.so,coverage.out" {
		t.Errorf("files = %s", got)
	}
	modes := map[string]os.FileMode{"bin/app": 0o755, "bin/lib/x.so": 0o644, "coverage.out": 0o600}
	for _, f := range c.Files {
		if f.Mode != modes[f.Path] {
			t.Errorf("%s: mode %o, want %o", f.Path, f.Mode, modes[f.Path])
		}
	}
	sk := skipped(c)
	for p, want := range map[string]string{
		"bin/shadow": "symlink to /etc/shadow points outside the workspace",
		"bin/cov":    "links are not stored",
		"bin/fifo":   "named pipe",
		"bin/sock":   "socket",
	} {
		if !strings.Contains(sk[p], want) {
			t.Errorf("skipped[%s] = %q, want it to say %q", p, sk[p], want)
		}
	}
	// etc/shadow and etc/** reach outside through a symlinked directory:
	// they match nothing rather than /etc's files.
	if len(c.Warnings) != 2 || !strings.Contains(c.Warnings[0], `"etc/shadow" matched no files`) {
		t.Errorf("warnings = %q", c.Warnings)
	}
	if c.Total != int64(len("ELF app")+len("so")+len("mode: set")) {
		t.Errorf("total = %d", c.Total)
	}
	// A literal name that is a symlink out is reported too.
	c, err = Collect(context.Background(), ws, []string{"bin/shadow", "bin"}, CollectOptions{Required: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := paths(c.Files); got != "bin/app,bin/lib/x.so" || !strings.Contains(skipped(c)["bin/shadow"], "outside") {
		t.Errorf("files %s, skipped %v", got, c.Skipped)
	}
}

func TestCollectDevice(t *testing.T) {
	testenv.RequireRoot(t)
	ws := t.TempDir()
	must(t, syscall.Mknod(filepath.Join(ws, "null"), syscall.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	write(t, filepath.Join(ws, "ok"), "ok", 0o644)
	c, err := Collect(context.Background(), ws, []string{"*"}, CollectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if paths(c.Files) != "ok" || !strings.Contains(skipped(c)["null"], "character device") {
		t.Errorf("files %s, skipped %v", paths(c.Files), c.Skipped)
	}
}

func TestCollectBadPatterns(t *testing.T) {
	ws := workspace(t)
	for _, p := range []string{"../x", "/etc/passwd", "bin/../../x", "bin/[", ""} {
		if _, err := Collect(context.Background(), ws, []string{p}, CollectOptions{}); err == nil {
			t.Errorf("pattern %q: no error", p)
		}
	}
}

func TestCollectNoMatch(t *testing.T) {
	ws := workspace(t)
	c, err := Collect(context.Background(), ws, []string{"dist/*.tar.gz", "bin/app"}, CollectOptions{})
	if err != nil || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], `"dist/*.tar.gz" matched no files`) {
		t.Fatalf("not required: %v, warnings %q", err, c.Warnings)
	}
	_, err = Collect(context.Background(), ws, []string{"bin/app", "dist/*.tar.gz"}, CollectOptions{Required: true})
	if !errors.Is(err, ErrNoMatch) || !strings.Contains(err.Error(), "dist/*.tar.gz") {
		t.Fatalf("required: got %v", err)
	}
	// Positive control: required patterns that match are fine.
	if _, err := Collect(context.Background(), ws, []string{"bin/app", "**/*.so"}, CollectOptions{Required: true}); err != nil {
		t.Fatal(err)
	}
}

func TestCollectSizeLimit(t *testing.T) {
	ws := workspace(t)
	big, err := os.Create(filepath.Join(ws, "bin/disk.img"))
	must(t, err)
	must(t, big.Truncate(20<<30)) // sparse: 20 GiB that cost no disk
	big.Close()
	_, err = Collect(context.Background(), ws, []string{"bin/**"}, CollectOptions{MaxTotal: 1 << 30})
	var le *LimitError
	if !errors.As(err, &le) || le.Path != "bin/disk.img" {
		t.Fatalf("got %v, want a LimitError for bin/disk.img", err)
	}
	for _, want := range []string{"bin/disk.img", "20 GiB", "limit of 1 GiB"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// Positive control: without the big file the same limit is fine.
	if _, err := Collect(context.Background(), ws, []string{"bin/app", "bin/lib/**"}, CollectOptions{MaxTotal: 1 << 30}); err != nil {
		t.Fatal(err)
	}
}
