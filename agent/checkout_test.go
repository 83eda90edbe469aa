package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/git"
	"github.com/jobrun/jobrun/internal/gittest"
)

// TestCheckoutMirror checks a registered repository's commits out of the
// agent's mirror: over HTTP with the lease's token, a pull request's head
// only reachable by its ref, and no fetch for a commit already there.
func TestCheckoutMirror(t *testing.T) {
	ctx := context.Background()
	w := gittest.New(t)
	first := w.Commit("first", map[string]string{"README": "one\n"})
	bare := w.Bare()
	w.Git("push", "-q", "origin", "main")
	url := gittest.Serve(t, filepath.Dir(bare), "tok") + "/" + filepath.Base(bare)

	p := &Pool{Runner: &Runner{WorkDir: t.TempDir()}}
	notices := func(rep *reporter) string {
		rep.mu.Lock()
		defer rep.mu.Unlock()
		return string(rep.buf) // the log lines not sent yet: all of them here
	}
	checkout := func(l *api.Lease) (string, string, *reporter, error) {
		rep := newReporter(nil, l.Attempt, nil, hclog.NewNullLogger(), func() {})
		repo, rev, err := p.checkout(ctx, l, t.TempDir(), rep)
		return repo, rev, rep, err
	}
	lease := &api.Lease{Repo: "octo/hello", CloneURL: url, Branch: "main", Commit: first, Checkout: &api.Checkout{Token: "wrong"}}
	if _, _, _, err := checkout(lease); err == nil {
		t.Fatal("a wrong token fetched")
	}
	lease.Checkout.Token = "tok"
	repo, rev, rep, err := checkout(lease)
	if err != nil {
		t.Fatal(err)
	}
	if rev != first || !strings.Contains(notices(rep), "fetch "+url) {
		t.Fatalf("rev %s, notices %q", rev, notices(rep))
	}
	dst := t.TempDir()
	if _, err := git.Export(ctx, repo, rev, dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "README")); string(b) != "one\n" {
		t.Fatalf("README = %q", b)
	}

	// Again: the mirror has the commit, nothing is fetched.
	_, _, rep, err = checkout(lease)
	if err != nil || !strings.Contains(notices(rep), "already fetched") {
		t.Fatalf("second checkout: %v, notices %q", err, notices(rep))
	}

	// A pull request's head, under refs/pull/N/head only.
	w.Git("checkout", "-q", "-b", "pr")
	pr := w.Commit("pr", map[string]string{"README": "pr\n"})
	w.Git("push", "-q", "origin", pr+":refs/pull/9/head")
	lease2 := &api.Lease{Repo: "octo/hello", CloneURL: url, Branch: "pull/9", Commit: pr, Checkout: &api.Checkout{Token: "tok"}}
	// The control: without its ref, the branch name is no ref of the
	// repository and the commit cannot come.
	if _, _, _, err := checkout(lease2); !errors.Is(err, git.ErrNoRef) || git.HasCommit(repo, pr) {
		t.Fatalf("pull request without its ref: %v", err)
	}
	lease2.Checkout.Ref = "refs/pull/9/head"
	repo2, rev2, _, err := checkout(lease2)
	if err != nil || repo2 != repo || !git.HasCommit(repo, pr) || rev2 != pr {
		t.Fatalf("pull request checkout: %s %s %v", repo2, rev2, err)
	}
}

// TestCheckoutSubmodules: a lease that asks for submodules gets the
// commit and its submodule written into the job's own directory.
func TestCheckoutSubmodules(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	lib := gittest.New(t)
	libHead := lib.Commit("lib", map[string]string{"lib.txt": "library\n"})
	lib.Git("init", "-q", "--bare", "-b", "main", filepath.Join(root, "lib.git"))
	lib.Git("push", "-q", filepath.Join(root, "lib.git"), "main")
	app := gittest.New(t)
	app.Commit("app", map[string]string{"README": "app\n", ".gitmodules": "[submodule \"lib\"]\n\tpath = lib\n\turl = ../lib.git\n"})
	app.Git("update-index", "--add", "--cacheinfo", "160000,"+libHead+",lib")
	app.Git("commit", "-qm", "lib")
	head := app.Git("rev-parse", "HEAD")
	app.Git("init", "-q", "--bare", "-b", "main", filepath.Join(root, "app.git"))
	app.Git("push", "-q", filepath.Join(root, "app.git"), "main")
	url := gittest.Serve(t, root, "tok") + "/app.git"

	p := &Pool{Runner: &Runner{WorkDir: t.TempDir()}}
	for _, subs := range []bool{false, true} {
		dir := t.TempDir()
		lease := &api.Lease{Repo: "app", CloneURL: url, Branch: "main", Commit: head, Checkout: &api.Checkout{Token: "tok", Submodules: subs}}
		rep := newReporter(nil, lease.Attempt, nil, hclog.NewNullLogger(), func() {})
		repo, rev, err := p.checkout(ctx, lease, dir, rep)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "lib", "lib.txt"))
		if !subs {
			// The control: without submodules the Runner exports the
			// mirror; the job's directory stays empty.
			if repo == "" || rev != head || len(b) != 0 {
				t.Fatalf("without submodules: %q %q, lib.txt %q", repo, rev, b)
			}
			continue
		}
		if repo != "" || rev != "" || string(b) != "library\n" {
			t.Fatalf("with submodules: repo %q rev %q (want the job's directory), lib.txt %q", repo, rev, b)
		}
	}
}
