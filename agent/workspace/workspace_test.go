package workspace

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/jobrun/jobrun/internal/idmap/idmaptest"
	"github.com/jobrun/jobrun/internal/testenv"
)

func assertGone(t *testing.T, base string) {
	t.Helper()
	if m := idmaptest.MountsUnder(t, base); len(m) > 0 {
		t.Errorf("mounts left under %s: %v", base, m)
	}
	ents, _ := os.ReadDir(base)
	for _, e := range ents {
		t.Errorf("left in %s: %s", base, e.Name())
	}
}

func TestOverlayLeavesSourceUntouched(t *testing.T) {
	testenv.RequireRoot(t)
	src, base := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(src, "a"), []byte("original"), 0o644)

	w, err := Overlay(context.Background(), base, "job-1", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(idmaptest.MountsUnder(t, base)) != 1 {
		t.Fatalf("want exactly one overlay mount under %s", base)
	}
	b, err := os.ReadFile(filepath.Join(w.Path(), "a"))
	if err != nil || string(b) != "original" {
		t.Fatalf("workspace sees %q, %v", b, err)
	}
	os.WriteFile(filepath.Join(w.Path(), "a"), []byte("changed by job"), 0o644)
	os.WriteFile(filepath.Join(w.Path(), "new"), []byte("x"), 0o644)
	if b, _ := os.ReadFile(filepath.Join(src, "a")); string(b) != "original" {
		t.Errorf("job's write reached the source: %q", b)
	}
	if _, err := os.Stat(filepath.Join(src, "new")); !os.IsNotExist(err) {
		t.Errorf("job's new file reached the source: %v", err)
	}
	// The same name cannot be taken twice while live.
	if _, err := Overlay(context.Background(), base, "job-1", src, nil); err == nil {
		t.Error("second workspace with a live name succeeded")
	}
	if err := w.Remove(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, base)
	if err := w.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestCleanupRemovesOnlyDeadWorkspaces(t *testing.T) {
	testenv.RequireRoot(t)
	src, base := t.TempDir(), t.TempDir()
	live, err := Overlay(context.Background(), base, "live", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := Overlay(context.Background(), base, "dead", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A killed process drops its lock but leaves its mount and dirs.
	dead.lock.Release()

	if err := Cleanup(context.Background(), base); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(live.Path()); err != nil {
		t.Errorf("Cleanup removed a live workspace: %v", err)
	}
	if m := idmaptest.MountsUnder(t, filepath.Join(base, "dead")); len(m) > 0 {
		t.Errorf("dead workspace still mounted: %v", m)
	}
	if _, err := os.Stat(filepath.Join(base, "dead")); !os.IsNotExist(err) {
		t.Errorf("dead workspace left: %v", err)
	}
	live.Remove()
	assertGone(t, base)
}

func TestCheckoutIgnoresUncommitted(t *testing.T) {
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
	os.WriteFile(filepath.Join(repo, "committed"), []byte("c"), 0o644)
	git("add", "committed")
	git("commit", "-qm", "x")
	os.WriteFile(filepath.Join(repo, "dirty"), []byte("d"), 0o644)

	w, commit, err := Checkout(context.Background(), base, "job", repo, "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	if len(commit) != 40 {
		t.Errorf("commit %q", commit)
	}
	if _, err := os.Stat(filepath.Join(w.Path(), "committed")); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(w.Path(), "dirty")); !os.IsNotExist(err) {
		t.Errorf("uncommitted file in a clean checkout: %v", err)
	}
	if err := w.Remove(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, base)

	// A failed checkout leaves nothing either.
	if _, _, err := Checkout(context.Background(), base, "bad", t.TempDir(), "HEAD"); err == nil {
		t.Error("checkout of a non-repository succeeded")
	}
	assertGone(t, base)
}

func TestCopyTree(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(src, "d/e"), 0o750)
	os.WriteFile(filepath.Join(src, "d/e/x.sh"), []byte("#!/bin/sh"), 0o755)
	os.Symlink("d/e/x.sh", filepath.Join(src, "l"))
	if err := copyTree(context.Background(), src, dst); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dst, "d/e/x.sh"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("x.sh: %v %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "l")); err != nil || l != "d/e/x.sh" {
		t.Errorf("link %q %v", l, err)
	}
}

func TestBadNames(t *testing.T) {
	for _, n := range []string{"", ".", "..", "a/b"} {
		if _, err := Overlay(context.Background(), t.TempDir(), n, t.TempDir(), nil); err == nil {
			t.Errorf("name %q accepted", n)
		}
	}
}
