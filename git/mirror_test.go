package git

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/gittest"
)

// TestMirrorIncremental mirrors a real repository, then fetches a new
// commit, a deleted branch and a pull request's ref into the same mirror.
func TestMirrorIncremental(t *testing.T) {
	ctx := context.Background()
	w := gittest.New(t)
	first := w.Commit("first", map[string]string{".ci.hcl": "# one\n"})
	w.Git("branch", "gone")
	bare := w.Bare()
	w.Git("push", "-q", "origin", "main", "gone")

	m := filepath.Join(t.TempDir(), "mirrors", "r.git")
	if err := Mirror(ctx, m, bare, MirrorOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(ctx, m, first, ".ci.hcl"); err != nil || string(b) != "# one\n" {
		t.Fatalf("ReadFile = %q, %v", b, err)
	}
	packs := func() int {
		ents, _ := os.ReadDir(filepath.Join(m, "objects", "pack"))
		n := 0
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".pack") {
				n++
			}
		}
		return n
	}
	before := packs()

	second := w.Commit("second", map[string]string{".ci.hcl": "# two\n"})
	w.Git("push", "-q", "origin", "main", ":gone")
	// A pull request's head lives outside refs/heads on the forge.
	w.Git("update-ref", "refs/pull/1/head", second)
	w.Git("push", "-q", "origin", "refs/pull/1/head")
	if err := Mirror(ctx, m, bare, MirrorOptions{Refs: []string{"refs/pull/1/head"}}); err != nil {
		t.Fatal(err)
	}
	if got := packs(); got != before+1 {
		t.Errorf("packs after the second fetch: %d, want %d (one new pack with what is new)", got, before+1)
	}
	if h, err := Resolve(ctx, m, "refs/heads/main"); err != nil || h != second {
		t.Fatalf("main = %s, %v; want %s", h, err, second)
	}
	if h, err := Resolve(ctx, m, "refs/pull/1/head"); err != nil || h != second {
		t.Fatalf("refs/pull/1/head = %s, %v; want %s", h, err, second)
	}
	if _, err := Resolve(ctx, m, "refs/heads/gone"); err == nil {
		t.Error("a branch deleted on the remote is still in the mirror")
	}
	// The first commit stays readable: old runs still check it out.
	if b, err := ReadFile(ctx, m, first, ".ci.hcl"); err != nil || string(b) != "# one\n" {
		t.Fatalf("ReadFile(first) = %q, %v", b, err)
	}
	if _, err := ReadFile(ctx, m, second, "missing"); !errors.Is(err, ErrNoFile) {
		t.Fatalf("ReadFile of a missing path: %v, want ErrNoFile", err)
	}
	if err := Mirror(ctx, m, bare, MirrorOptions{Refs: []string{"refs/pull/*"}}); err == nil {
		t.Error("a wildcard ref was accepted")
	}
}

// TestMirrorTokenOverHTTP fetches over git's smart HTTP protocol from a
// server that wants a token: refused without it, served with it.
func TestMirrorTokenOverHTTP(t *testing.T) {
	ctx := context.Background()
	w := gittest.New(t)
	head := w.Commit("first", map[string]string{"README": "hi\n"})
	bare := w.Bare()
	w.Git("push", "-q", "origin", "main")
	url := gittest.Serve(t, filepath.Dir(bare), "s3cret") + "/" + filepath.Base(bare)

	m := filepath.Join(t.TempDir(), "r.git")
	err := Mirror(ctx, m, url, MirrorOptions{Auth: Auth{Token: "wrong"}})
	if err == nil || !strings.Contains(err.Error(), "fetch "+url) {
		t.Fatalf("fetch with a wrong token: %v, want an error naming the URL", err)
	}
	if err := Mirror(ctx, m, url, MirrorOptions{Auth: Auth{Token: "s3cret"}}); err != nil {
		t.Fatal(err)
	}
	if h, err := Resolve(ctx, m, "refs/heads/main"); err != nil || h != head {
		t.Fatalf("main = %s, %v; want %s", h, err, head)
	}
}

// TestMirrorShallow fetches one commit per ref over HTTP, then only the
// new one after a push.
func TestMirrorShallow(t *testing.T) {
	ctx := context.Background()
	w := gittest.New(t)
	first := w.Commit("first", map[string]string{"a": "1"})
	second := w.Commit("second", map[string]string{"a": "2"})
	bare := w.Bare()
	w.Git("push", "-q", "origin", "main")
	url := gittest.Serve(t, filepath.Dir(bare), "") + "/" + filepath.Base(bare)
	m := filepath.Join(t.TempDir(), "r.git")
	if err := Mirror(ctx, m, url, MirrorOptions{Depth: 1}); err != nil {
		t.Fatal(err)
	}
	if !HasCommit(m, second) {
		t.Fatal("the head is missing")
	}
	if HasCommit(m, first) {
		t.Fatal("a depth-1 mirror holds the head's parent")
	}
	third := w.Commit("third", map[string]string{"a": "3"})
	w.Git("push", "-q", "origin", "main")
	if err := Mirror(ctx, m, url, MirrorOptions{Depth: 1}); err != nil {
		t.Fatal(err)
	}
	if h, err := Resolve(ctx, m, "refs/heads/main"); err != nil || h != third {
		t.Fatalf("main = %s, %v; want %s", h, err, third)
	}
	if b, err := ReadFile(ctx, m, third, "a"); err != nil || string(b) != "3" {
		t.Fatalf("ReadFile = %q, %v", b, err)
	}
}

// TestMirrorRepacks fetches one ref at a time, more times than maxPacks:
// the packs are consolidated and every commit a ref reaches stays.
func TestMirrorRepacks(t *testing.T) {
	ctx := context.Background()
	w := gittest.New(t)
	first := w.Commit("first", map[string]string{"f": "0"})
	bare := w.Bare()
	w.Git("push", "-q", "origin", "main")
	m := filepath.Join(t.TempDir(), "r.git")
	var last string
	for i := 0; i < maxPacks+4; i++ {
		b := fmt.Sprintf("b%02d", i)
		w.Git("checkout", "-q", "-B", b, "main")
		last = w.Commit(b, map[string]string{"f": b})
		w.Git("push", "-q", "origin", b)
		if err := Mirror(ctx, m, bare, MirrorOptions{Refs: []string{"refs/heads/" + b}, OnlyRefs: true}); err != nil {
			t.Fatal(err)
		}
	}
	packs, _ := filepath.Glob(filepath.Join(m, "objects", "pack", "*.pack"))
	if len(packs) > maxPacks {
		t.Fatalf("%d packs after %d fetches, want at most %d", len(packs), maxPacks+4, maxPacks)
	}
	for _, c := range []string{first, last} {
		if _, err := ReadFile(ctx, m, c, "f"); err != nil {
			t.Fatalf("commit %s after the repack: %v", c, err)
		}
	}
	// OnlyRefs fetched the pushed branches, not main.
	if _, err := Resolve(ctx, m, "refs/heads/main"); err == nil {
		t.Error("main was fetched by one-ref fetches")
	}
	if err := Mirror(ctx, m, bare, MirrorOptions{Refs: []string{"refs/heads/nosuch"}, OnlyRefs: true}); !errors.Is(err, ErrNoRef) {
		t.Fatalf("fetch of a missing ref: %v, want ErrNoRef", err)
	}
}

// TestMirrorSSHKey fetches over SSH with a private key, checking the
// server's host key against known_hosts.
func TestMirrorSSHKey(t *testing.T) {
	ctx := context.Background()
	w := gittest.New(t)
	head := w.Commit("first", map[string]string{"README": "hi\n"})
	bare := w.Bare()
	w.Git("push", "-q", "origin", "main")
	key, pub := gittest.SSHKey(t)
	url, known := gittest.ServeSSH(t, filepath.Dir(bare), pub)
	url += "/" + filepath.Base(bare)
	t.Setenv("SSH_KNOWN_HOSTS", known)

	other, _ := gittest.SSHKey(t)
	m := filepath.Join(t.TempDir(), "r.git")
	if err := Mirror(ctx, m, url, MirrorOptions{Auth: Auth{SSHKey: other}}); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("a key the server does not know: %v, want refused", err)
	}
	if err := Mirror(ctx, m, url, MirrorOptions{Auth: Auth{SSHKey: key}}); err != nil {
		t.Fatal(err)
	}
	if h, err := Resolve(ctx, m, "refs/heads/main"); err != nil || h != head {
		t.Fatalf("main = %s, %v; want %s", h, err, head)
	}
	// A host key that known_hosts does not name is refused.
	_, elsewhere := gittest.ServeSSH(t, filepath.Dir(bare), pub)
	t.Setenv("SSH_KNOWN_HOSTS", elsewhere)
	err := Mirror(ctx, filepath.Join(t.TempDir(), "r2.git"), url, MirrorOptions{Auth: Auth{SSHKey: key}})
	if err == nil || !strings.Contains(err.Error(), "knownhosts: key is unknown") {
		t.Fatalf("unknown host key: %v, want a refusal", err)
	}
}
