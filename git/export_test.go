package git

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// newRepo makes a real repository with the git CLI, so go-git reads what
// git itself wrote.
func newRepo(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git on PATH: `make test` installs it (scripts/deps.sh)")
	}
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("init", "-q", "-b", "main")
	write(t, filepath.Join(dir, "README"), "hello\n", 0o644)
	write(t, filepath.Join(dir, "bin/run.sh"), "#!/bin/sh\necho hi\n", 0o755)
	if err := os.Symlink("README", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	run("add", "-A")
	run("commit", "-qm", "first")
	write(t, filepath.Join(dir, "README"), "changed, uncommitted\n", 0o644)
	write(t, filepath.Join(dir, "untracked"), "x", 0o644)
	return dir
}

func write(t *testing.T, p, s string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), mode); err != nil {
		t.Fatal(err)
	}
}

func TestExportHEAD(t *testing.T) {
	repo := newRepo(t)
	dst := t.TempDir()
	// From a subdirectory: the repository is found above it.
	commit, err := Export(context.Background(), filepath.Join(repo, "bin"), "HEAD", dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(commit) != 40 {
		t.Errorf("commit = %q, want a full hash", commit)
	}
	b, err := os.ReadFile(filepath.Join(dst, "README"))
	if err != nil || string(b) != "hello\n" {
		t.Errorf("README = %q, %v; want the committed content", b, err)
	}
	if _, err := os.Stat(filepath.Join(dst, "untracked")); !os.IsNotExist(err) {
		t.Errorf("untracked file exported: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dst, ".git")); !os.IsNotExist(err) {
		t.Errorf(".git exported: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dst, "bin/run.sh"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/run.sh mode = %v, %v; want 0755", fi.Mode(), err)
	}
	if target, err := os.Readlink(filepath.Join(dst, "link")); err != nil || target != "README" {
		t.Errorf("link -> %q, %v; want README", target, err)
	}
}

func TestExportErrors(t *testing.T) {
	repo := newRepo(t)
	if _, err := Export(context.Background(), repo, "no-such-branch", t.TempDir()); err == nil ||
		!strings.Contains(err.Error(), "no-such-branch") {
		t.Errorf("unknown revision: %v, want an error naming it", err)
	}
	if _, err := Export(context.Background(), t.TempDir(), "HEAD", t.TempDir()); err == nil ||
		!strings.Contains(err.Error(), "open repository") {
		t.Errorf("not a repository: %v", err)
	}
	// A non-empty destination is refused rather than merged into.
	dst := t.TempDir()
	write(t, filepath.Join(dst, "README"), "mine", 0o644)
	if _, err := Export(context.Background(), repo, "HEAD", dst); err == nil {
		t.Error("export over an existing file succeeded")
	}
}

func TestCheckPath(t *testing.T) {
	for _, p := range []string{"a", "a/b", ".github/x", "a.git"} {
		if err := checkPath(p); err != nil {
			t.Errorf("checkPath(%q) = %v", p, err)
		}
	}
	for _, p := range []string{"", "/etc/x", "../x", "a/../../x", ".git/config", "a/.GIT/hooks", "a//b"} {
		if err := checkPath(p); err == nil {
			t.Errorf("checkPath(%q) accepted", p)
		}
	}
}
