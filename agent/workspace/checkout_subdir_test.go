package workspace

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/testenv"
)

// TestCheckoutOfSubdirectory: a clean checkout for a job file in a
// subdirectory of its repository has that subdirectory as its workspace,
// not the repository's top, as the overlay of that directory does. A
// subdirectory the commit lacks, or has as a link, is refused by name.
func TestCheckoutOfSubdirectory(t *testing.T) {
	testenv.RequireTool(t, "git")
	repo, base := t.TempDir(), t.TempDir()
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@t"}, args...)...)
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	sub := filepath.Join(repo, "examples", "go")
	os.MkdirAll(sub, 0o755)
	os.WriteFile(filepath.Join(sub, "beside-job-file"), []byte("b"), 0o644)
	os.WriteFile(filepath.Join(repo, "at-top"), []byte("t"), 0o644)
	os.Symlink("/", filepath.Join(repo, "out"))
	git("add", "-A")
	git("commit", "-qm", "x")
	os.MkdirAll(filepath.Join(repo, "uncommitted"), 0o755)

	w, _, err := Checkout(context.Background(), base, "job", sub, "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(w.Path(), "beside-job-file")); err != nil {
		t.Errorf("the workspace is not the job file's directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(w.Path(), "at-top")); !os.IsNotExist(err) {
		t.Errorf("the workspace is the repository's top: %v", err)
	}
	if err := w.Remove(); err != nil {
		t.Fatal(err)
	}
	// Control: the top of the repository is still the top.
	w, _, err = Checkout(context.Background(), base, "top", repo, "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(w.Path(), "at-top")); err != nil {
		t.Error(err)
	}
	if err := w.Remove(); err != nil {
		t.Fatal(err)
	}
	// A bare mirror (the pool agent's source) exports its whole tree.
	bare := filepath.Join(t.TempDir(), "mirror.git")
	if out, err := exec.Command("git", "clone", "-q", "--bare", repo, bare).CombinedOutput(); err != nil {
		t.Fatalf("git clone --bare: %v\n%s", err, out)
	}
	w, _, err = Checkout(context.Background(), base, "mirror", bare, "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(w.Path(), "at-top")); err != nil {
		t.Error(err)
	}
	if err := w.Remove(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, base)

	for dir, want := range map[string]string{
		filepath.Join(repo, "uncommitted"): "does not have it",
		filepath.Join(repo, "out", "tmp"):  "not in the work tree",
	} {
		os.MkdirAll(dir, 0o755)
		if _, _, err := Checkout(context.Background(), base, "bad", dir, "HEAD"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("checkout of %s: %v, want an error saying %q", dir, err, want)
		}
		assertGone(t, base)
	}
}
