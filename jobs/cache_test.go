package jobs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func hash(t *testing.T, dir string, patterns ...string) string {
	t.Helper()
	h, err := HashFiles(dir, patterns...)
	if err != nil {
		t.Fatalf("HashFiles(%q): %v", patterns, err)
	}
	return h
}

func TestHashFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "go.sum", "a v1\n")
	write(t, dir, "sub/go.sum", "b v1\n")
	write(t, dir, "sub/deep/go.sum", "c v1\n")
	write(t, dir, "other.txt", "x")

	top := hash(t, dir, "go.sum")
	all := hash(t, dir, "**/go.sum")
	if len(top) != 64 || len(all) != 64 || top == all {
		t.Fatalf("top %q all %q", top, all)
	}
	if hash(t, dir, "go.sum") != top || hash(t, dir, "./go.sum") != top {
		t.Error("not deterministic")
	}
	// Order of patterns and overlapping matches do not matter.
	if hash(t, dir, "sub/**/go.sum", "go.sum") != hash(t, dir, "go.sum", "sub/**/go.sum", "sub/go.sum") {
		t.Error("pattern order or overlap changes the hash")
	}
	if hash(t, dir, "nothing*") != "" || hash(t, dir, "missing/dir/*.sum") != "" {
		t.Error("no match should give an empty hash")
	}
	// Content changes change the hash; so does moving the file.
	write(t, dir, "sub/deep/go.sum", "c v2\n")
	if hash(t, dir, "**/go.sum") == all {
		t.Error("changed content, same hash")
	}
	if hash(t, dir, "go.sum") != top {
		t.Error("unrelated change changed the hash")
	}
	other := t.TempDir()
	write(t, other, "renamed.sum", "a v1\n")
	if hash(t, other, "*.sum") == top {
		t.Error("a file's path is not part of the hash")
	}
	// Directories that match are not files.
	if err := os.Mkdir(filepath.Join(dir, "dir.sum"), 0o755); err != nil {
		t.Fatal(err)
	}
	if hash(t, dir, "*.sum") != top {
		t.Error("a matching directory changed the hash")
	}
	for _, bad := range []string{"/etc/passwd", "../x", "a/../../x", "[", ""} {
		if _, err := HashFiles(dir, bad); err == nil {
			t.Errorf("HashFiles(%q) accepted", bad)
		}
	}
}

func TestHashFilesLinks(t *testing.T) {
	outside := t.TempDir()
	write(t, outside, "secret", "s3cret")
	dir := t.TempDir()
	write(t, dir, "real.sum", "data")
	if err := os.Symlink("real.sum", filepath.Join(dir, "inside.sum")); err != nil {
		t.Fatal(err)
	}
	// A link that stays inside is followed: it hashes like its target.
	if hash(t, dir, "inside.sum") == "" {
		t.Error("link inside the workspace not followed")
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "escape.sum")); err != nil {
		t.Fatal(err)
	}
	if _, err := HashFiles(dir, "escape.sum"); err == nil {
		t.Error("a link out of the workspace was followed")
	}
	if _, err := HashFiles(dir, "*.sum"); err == nil {
		t.Error("a link out of the workspace was followed by a glob")
	}
	// A linked directory leading out is not walked into.
	sub := t.TempDir()
	write(t, sub, "x/go.sum", "outside")
	clean := t.TempDir()
	write(t, clean, "go.sum", "in")
	want := hash(t, clean, "**/go.sum")
	if err := os.Symlink(filepath.Join(sub, "x"), filepath.Join(clean, "linked")); err != nil {
		t.Fatal(err)
	}
	if got := hash(t, clean, "**/go.sum"); got != want {
		t.Error("walked into a linked directory out of the workspace")
	}
	if _, err := HashFiles(clean, "linked/go.sum"); err == nil {
		t.Error("read a file through a link out of the workspace")
	}
}

func TestEvalKey(t *testing.T) {
	f := parse(t, `
job "a" {
  image = "busybox"
  matrix { os = ["linux", "darwin"] }
  cache "deps" {
    path = "/deps"
    key  = "deps-${matrix.os}-${hashfiles("lock", "**/*.lock")}"
  }
  cache "plain" { path = "/plain" }
  cache "fixed" {
    path = "/fixed"
    key  = "v1"
  }
  step "x" { run = "true" }
}`)
	ws := t.TempDir()
	write(t, ws, "lock", "1")
	write(t, ws, "sub/a.lock", "2")
	linux, darwin := f.Jobs[0].Caches, f.Jobs[1].Caches
	k1, err := linux[0].EvalKey(ws)
	if err != nil {
		t.Fatal(err)
	}
	want := "deps-linux-" + hash(t, ws, "lock", "**/*.lock")
	if k1 != want {
		t.Errorf("key = %q, want %q", k1, want)
	}
	k2, err := darwin[0].EvalKey(ws)
	if err != nil || !strings.HasPrefix(k2, "deps-darwin-") || strings.TrimPrefix(k2, "deps-darwin-") != strings.TrimPrefix(k1, "deps-linux-") {
		t.Errorf("darwin key = %q, %v", k2, err)
	}
	write(t, ws, "sub/a.lock", "3")
	if k3, _ := linux[0].EvalKey(ws); k3 == k1 {
		t.Error("key unchanged after a lock file changed")
	}
	if k, err := linux[1].EvalKey(ws); k != "" || err != nil {
		t.Errorf("no key: %q, %v", k, err)
	}
	if k, err := linux[2].EvalKey(ws); k != "v1" || err != nil {
		t.Errorf("fixed key: %q, %v", k, err)
	}
	if _, err := linux[0].EvalKey(filepath.Join(ws, "missing")); err == nil {
		t.Error("EvalKey in a missing workspace succeeded")
	}
}
