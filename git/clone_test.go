package git

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCloneThenExportCommit clones a real repository made by the git CLI
// and exports a commit that is no longer its branch's head.
func TestCloneThenExportCommit(t *testing.T) {
	repo := newRepo(t)
	first := strings.TrimSpace(gitOut(t, repo, "rev-parse", "HEAD"))
	write(t, filepath.Join(repo, "second"), "2\n", 0o644)
	gitOut(t, repo, "add", "second")
	gitOut(t, repo, "commit", "-qm", "second")

	dir := filepath.Join(t.TempDir(), "clone")
	if err := Clone(context.Background(), repo, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "README")); !os.IsNotExist(err) {
		t.Fatalf("clone checked out a work tree: stat README: %v", err)
	}
	dst := t.TempDir()
	got, err := Export(context.Background(), dir, first, dst)
	if err != nil {
		t.Fatal(err)
	}
	if got != first {
		t.Fatalf("exported %s, want %s", got, first)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "README")); err != nil || string(b) != "hello\n" {
		t.Fatalf("README = %q, %v; want the committed text", b, err)
	}
	// The positive control: the later commit exports its new file; the
	// first commit's export above must not have it.
	if _, err := os.Stat(filepath.Join(dst, "second")); !os.IsNotExist(err) {
		t.Fatalf("first commit's export has the second commit's file: %v", err)
	}
	dst2 := t.TempDir()
	if _, err := Export(context.Background(), dir, "refs/remotes/origin/main", dst2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst2, "second")); err != nil {
		t.Fatalf("branch head's export lacks the second commit's file: %v", err)
	}
}

func TestCloneMissingRepository(t *testing.T) {
	err := Clone(context.Background(), filepath.Join(t.TempDir(), "nothing"), filepath.Join(t.TempDir(), "clone"))
	if err == nil || !strings.Contains(err.Error(), "clone ") {
		t.Fatalf("err = %v, want a clone error naming the URL", err)
	}
}

func gitOut(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
