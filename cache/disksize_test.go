package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDiskSizeIsMeasures: the size a release without upload takes
// (diskSize) is the one measure's digest walk takes, on a tree with
// nested directories, a hard link (counted once) and symbolic links to a
// file and to a directory outside the tree (never followed: the outside
// directory's large file does not count).
func TestDiskSizeIsMeasures(t *testing.T) {
	root := t.TempDir()
	outside := filepath.Join(root, "outside")
	dir := filepath.Join(root, "vol")
	for _, d := range []string{outside, filepath.Join(dir, "a", "b", "c"), filepath.Join(dir, "d")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, n int) {
		t.Helper()
		if err := os.WriteFile(p, []byte(strings.Repeat("x", n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(outside, "big"), 4<<20)
	write(filepath.Join(dir, "a", "f"), 100<<10)
	write(filepath.Join(dir, "a", "b", "c", "g"), 300<<10)
	if err := os.Link(filepath.Join(dir, "a", "f"), filepath.Join(dir, "d", "f-link")); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"to-file": "a/f", "to-outside": outside} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	got := diskSizeAsMeasured(t, dir)
	if got < 400<<10 || got >= 4<<20 {
		t.Errorf("diskSize = %d: want the tree's 400 KiB and some, not the outside 4 MiB", got)
	}
	if u, err := measure(dir); err != nil || u.size != got || u.digest == "" {
		t.Errorf("measure = %+v, %v: want diskSize's size and a digest", u, err)
	}
}

// TestDiskSizeWideTreeInParallel: on a tree wider than the walk's queue
// (so its workers both share and keep directories), with hard links
// across directories that different workers read, the parallel walk
// counts what measure's one-by-one walk counts, each linked file once.
func TestDiskSizeWideTreeInParallel(t *testing.T) {
	dir := t.TempDir()
	first := ""
	for i := range 3 * sizeQueue {
		d := filepath.Join(dir, fmt.Sprintf("d%03d", i), "sub", fmt.Sprintf("s%d", i%7))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(d, "f")
		if err := os.WriteFile(f, []byte(strings.Repeat("y", 1000*(i%13+1))), 0o644); err != nil {
			t.Fatal(err)
		}
		if first == "" {
			first = f
			continue
		}
		if err := os.Link(first, filepath.Join(d, "link")); err != nil {
			t.Fatal(err)
		}
	}
	diskSizeAsMeasured(t, dir)
}

// TestDiskSizeMissingDir: a walk of a directory that is not there fails.
func TestDiskSizeMissingDir(t *testing.T) {
	if n, err := diskSize(filepath.Join(t.TempDir(), "gone")); err == nil {
		t.Fatalf("diskSize of a missing dir = %d, want an error", n)
	}
}

// diskSizeAsMeasured is diskSize(dir), an error unless it is the size
// measure's digest walk takes.
func diskSizeAsMeasured(t *testing.T, dir string) int64 {
	t.Helper()
	got, err := diskSize(dir)
	if err != nil {
		t.Fatal(err)
	}
	want, err := measure(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got != want.size {
		t.Errorf("diskSize = %d, measure's walk = %d", got, want.size)
	}
	return got
}
