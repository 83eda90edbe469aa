package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/mount"
)

// writeLayout writes img into a new OCI layout tagged tag and returns the
// oci-layout: reference.
func writeLayout(t testing.TB, img v1.Image, tag string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{refNameAnnotation: tag})); err != nil {
		t.Fatal(err)
	}
	return LayoutPrefix + dir + ":" + tag
}

// whiteoutImage has a lower layer with files and an upper layer that
// deletes one (whiteout) and empties a directory (opaque).
func whiteoutImage(t testing.TB) v1.Image {
	return imageOf(t,
		layerOf(t, entry{name: "a/", typ: '5'}, entry{name: "a/gone", body: "x"}, entry{name: "a/kept", body: "k"},
			entry{name: "b/", typ: '5'}, entry{name: "b/old", body: "o"}, entry{name: "link", typ: '2', link: "a/kept"}),
		layerOf(t, entry{name: "a/", typ: '5'}, entry{name: "a/.wh.gone"},
			entry{name: "b/", typ: '5'}, entry{name: "b/.wh..wh..opq"}, entry{name: "b/new", body: "n"}))
}

func checkWhiteouts(t *testing.T, root string) {
	t.Helper()
	for p, want := range map[string]string{"a/kept": "k", "b/new": "n", "link": "k"} {
		if b, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
	for _, p := range []string{"a/gone", "b/old"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still visible: %v", p, err)
		}
	}
}

// TestSnapshotLifecycle: a snapshot shows the image with whiteouts applied,
// takes writes in its own upper dir only, and Remove leaves nothing: no
// mount, no directory, the layers untouched.
func TestSnapshotLifecycle(t *testing.T) {
	s, state := newStore(t, Options{})
	ref := writeLayout(t, whiteoutImage(t), "v1")
	img, err := s.Resolve(context.Background(), ref, "")
	if err != nil {
		t.Fatal(err)
	}
	leaks := leakcheck.Take(t, state)
	layerFiles := tree(t, s.layerPath(img.Layers[0].DiffID))

	sn, err := s.Snapshot(context.Background(), img, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if !mount.IsMountpoint(sn.Rootfs()) {
		t.Fatal("rootfs is not a mount point")
	}
	checkWhiteouts(t, sn.Rootfs())
	// Writes, a delete of a lower file, and a second snapshot of the same
	// image that sees none of it.
	if err := os.WriteFile(filepath.Join(sn.Rootfs(), "a/new"), []byte("w"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(sn.Rootfs(), "a/kept")); err != nil {
		t.Fatal(err)
	}
	sn2, err := s.Snapshot(context.Background(), img, "job-2")
	if err != nil {
		t.Fatal(err)
	}
	checkWhiteouts(t, sn2.Rootfs())
	if _, err := s.Snapshot(context.Background(), img, "job-2"); err == nil {
		t.Error("a second snapshot with a live id was made")
	}
	for _, sn := range []*Snapshot{sn, sn2} {
		if err := sn.Remove(); err != nil {
			t.Fatal(err)
		}
		if err := sn.Remove(); err != nil {
			t.Errorf("second Remove: %v", err)
		}
	}
	if got := tree(t, s.layerPath(img.Layers[0].DiffID)); got != layerFiles {
		t.Errorf("the layer changed:\n%s\nwas\n%s", got, layerFiles)
	}
	leaks.Check(t)
	for _, id := range []string{"", "a/b", "..", "x:y", strings.Repeat("x", MaxSnapshotID+1)} {
		if _, err := s.Snapshot(context.Background(), img, id); err == nil {
			t.Errorf("snapshot id %q accepted", id)
		}
	}
}

func tree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			fmt.Fprintf(&b, "%s %v %d\n", strings.TrimPrefix(p, dir), fi.Mode(), fi.Size())
		}
		return err
	})
	return b.String()
}

// TestCleanupAfterCrash: a snapshot whose process was killed (its mount
// still there) is removed by Cleanup; one a live process holds is not.
func TestCleanupAfterCrash(t *testing.T) {
	s, state := newStore(t, Options{})
	ref := writeLayout(t, whiteoutImage(t), "v1")
	img, err := s.Resolve(context.Background(), ref, "")
	if err != nil {
		t.Fatal(err)
	}
	leaks := leakcheck.Take(t, state)
	dead := holdSnapshot(t, s.dir, img.Ref, "dead")
	live := holdSnapshot(t, s.dir, img.Ref, "live")
	dead.Process.Signal(syscall.SIGKILL)
	dead.Wait()
	stop := func(c *exec.Cmd) {
		c.Process.Kill()
		c.Wait()
	}
	deadRoot := filepath.Join(s.snaps, "dead", "rootfs")
	liveRoot := filepath.Join(s.snaps, "live", "rootfs")
	if !mount.IsMountpoint(deadRoot) {
		stop(live)
		t.Fatal("the killed process's mount is gone already; nothing to clean up")
	}
	// An unfinished unpack left in tmp/ by the killed process.
	os.MkdirAll(filepath.Join(s.tmpDir(), "unpack-123", "root"), 0o755)

	err = s.Cleanup(context.Background())
	if mount.IsMountpoint(deadRoot) || exists(filepath.Join(s.snaps, "dead")) || exists(filepath.Join(s.snaps, "dead.lock")) {
		t.Error("the dead snapshot was not cleaned up")
	}
	if !mount.IsMountpoint(liveRoot) {
		t.Error("Cleanup unmounted a live snapshot")
	}
	checkWhiteouts(t, liveRoot)
	assertClean(t, s, "")
	stop(live)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	leaks.Check(t)

	// Prune while a live process's snapshot runs keeps its layers, even with
	// its image forgotten.
	live = holdSnapshot(t, s.dir, img.Ref, "live")
	defer func() {
		stop(live)
		if err := s.Cleanup(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	if err := s.Remove(img.Ref); err != nil {
		t.Fatal(err)
	}
	res, err := s.Prune(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Layers != 0 || !exists(s.layerPath(img.Layers[1].DiffID)) {
		t.Errorf("prune removed a layer in use: %+v", res)
	}
	checkWhiteouts(t, liveRoot)
}

// TestPrune removes what no image uses, keeps what one does, and with a
// budget forgets the least recently used image not in use.
func TestPrune(t *testing.T) {
	reg := newRegistry(t)
	base := layerOf(t, entry{name: "base", body: strings.Repeat("b", 1<<20)})
	push(t, reg.host+"/p/a:1", imageOf(t, base, layerOf(t, entry{name: "a", body: strings.Repeat("a", 1<<20)})))
	push(t, reg.host+"/p/b:1", imageOf(t, base, layerOf(t, entry{name: "b", body: strings.Repeat("c", 1<<20)})))
	s, _ := newStore(t, Options{})
	a, err := s.Pull(context.Background(), reg.host+"/p/a:1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Pull(context.Background(), reg.host+"/p/b:1")
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Prune(context.Background(), 0)
	if err != nil || res.Layers+res.Blobs != 0 {
		t.Fatalf("prune with every image referenced removed %+v, %v", res, err)
	}
	if err := s.Remove(a.Ref); err != nil {
		t.Fatal(err)
	}
	if res, err = s.Prune(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	// a's own layer, its blob, config and manifests go; the shared base stays.
	if res.Layers != 1 || res.Blobs < 3 || res.Freed == 0 {
		t.Errorf("prune = %+v", res)
	}
	if exists(s.layerPath(a.Layers[1].DiffID)) || !exists(s.layerPath(a.Layers[0].DiffID)) {
		t.Error("wrong layers pruned")
	}
	sn, err := s.Snapshot(context.Background(), b, "in-use")
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Remove()
	// A budget of one byte: b is in use, so it stays.
	if res, err = s.Prune(context.Background(), 1); err != nil || len(res.Images) != 0 {
		t.Errorf("budget prune forgot an image in use: %+v %v", res, err)
	}
	sn.Remove()
	if res, err = s.Prune(context.Background(), 1); err != nil || len(res.Images) != 1 || res.Layers != 2 {
		t.Errorf("budget prune = %+v %v", res, err)
	}
	if imgs, _ := s.List(); len(imgs) != 0 {
		t.Errorf("images left: %v", imgs)
	}
}

// TestFlatten: an image with more layers than one overlay mount takes is
// merged into one directory, whiteouts applied.
func TestFlatten(t *testing.T) {
	img := whiteoutImage(t)
	for i := range 60 {
		var err error
		img, err = mutate.AppendLayers(img, layerOf(t, entry{name: fmt.Sprintf("f%d", i), body: "x"}))
		if err != nil {
			t.Fatal(err)
		}
	}
	s, state := newStore(t, Options{})
	got, err := s.Resolve(context.Background(), writeLayout(t, img, "many"), "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Flat == "" {
		t.Fatalf("%d layers were not flattened", len(got.Layers))
	}
	leaks := leakcheck.Take(t, state)
	sn, err := s.Snapshot(context.Background(), got, "flat")
	if err != nil {
		t.Fatal(err)
	}
	checkWhiteouts(t, sn.Rootfs())
	if _, err := os.Stat(filepath.Join(sn.Rootfs(), "f59")); err != nil {
		t.Error(err)
	}
	if err := sn.Remove(); err != nil {
		t.Fatal(err)
	}
	leaks.Check(t)
}

// TestTestImages snapshots the images scripts/testimages.sh builds.
func TestTestImages(t *testing.T) {
	dir := testImages(t)
	s, _ := newStore(t, Options{})
	for _, c := range []struct{ ref, file, user string }{
		{"busybox:latest", "bin/busybox", ""},
		{"busybox-nobody:latest", "bin/sh", "nobody"},
		{"debian-go:1.26", "usr/local/go/bin/go", ""},
	} {
		img, err := s.Resolve(context.Background(), "oci-layout:"+c.ref, dir)
		if err != nil {
			t.Fatal(err)
		}
		if img.Config.User != c.user {
			t.Errorf("%s: user %q", c.ref, img.Config.User)
		}
		sn, err := s.Snapshot(context.Background(), img, "t")
		if err != nil {
			t.Fatal(err)
		}
		_, err = os.Stat(filepath.Join(sn.Rootfs(), c.file))
		if rerr := sn.Remove(); rerr != nil {
			t.Fatal(rerr)
		}
		if err != nil {
			t.Errorf("%s: %v", c.ref, err)
		}
	}
}

// TestTwentyLayersNeedNoFlattening: an image of 20 layers in a store under
// the default state dir is snapshotted as it is, its idmapped lower paths
// included (a snapshot id is a container's, at most 63 bytes); 60 layers
// are flattened (the control).
func TestTwentyLayersNeedNoFlattening(t *testing.T) {
	s := &Store{dir: "/var/lib/jobrun/images", snaps: "/var/lib/jobrun/snapshots"}
	layers := func(n int) []string {
		var l []string
		for range n {
			l = append(l, filepath.Join(s.dir, "layers", strings.Repeat("a", 64)))
		}
		return l
	}
	if !s.fits(layers(20)) {
		t.Error("20 layers do not fit one overlay mount: such images would be flattened")
	}
	if s.fits(layers(60)) {
		t.Error("60 layers fit one overlay mount: the check measures nothing")
	}
}
