package image

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/agent/config"
)

// TestTwoStoresOneDir: two Stores on one directory (as two jobrun
// processes have) pulling one image at once download each blob once: the
// file lock, not the in-process call table, makes them share.
func TestTwoStoresOneDir(t *testing.T) {
	reg := newRegistry(t)
	big := strings.Repeat("y", 2<<20)
	ref := reg.host + "/two/stores:1"
	push(t, ref, imageOf(t, layerOf(t, entry{name: "a", body: big}), layerOf(t, entry{name: "b", body: big + "b"})))
	before := reg.blobGets()
	reg.setWrap(func(http.ResponseWriter, *http.Request) bool {
		time.Sleep(50 * time.Millisecond) // so that the pulls overlap
		return false
	})
	s1, state := newStore(t, Options{})
	s2, err := Open(filepath.Join(state, "images"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	pullAll(t, ref, s1, s2, s1, s2)
	assertEachBlobOnce(t, reg, before, 3)
	assertClean(t, s1, "")
}

// TestMirrorFallback: a configured mirror is asked first and serves the
// whole pull; a dead mirror is skipped for the registry itself; the image
// keeps its own name either way.
func TestMirrorFallback(t *testing.T) {
	origin, mirror := newRegistry(t), newRegistry(t)
	img := imageOf(t, layerOf(t, entry{name: "m", body: "mirrored"}))
	push(t, origin.host+"/lib/tool:1", img)
	push(t, mirror.host+"/lib/tool:1", img)
	ref := origin.host + "/lib/tool:1"
	parse := func(mirrors ...string) *config.Config {
		q := make([]string, len(mirrors))
		for i, m := range mirrors {
			q[i] = strconv.Quote(m)
		}
		cfg, err := config.Parse("config.hcl", []byte(fmt.Sprintf("registry %q { mirrors = [%s] }\n", origin.host, strings.Join(q, ", "))))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	o0, m0 := origin.blobGets(), mirror.blobGets()
	s, _ := newStore(t, Options{Config: parse(mirror.host)})
	got, err := s.Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if got.Ref != ref {
		t.Errorf("pulled through the mirror as %s, want %s", got.Ref, ref)
	}
	if o, m := origin.blobGets()-o0, mirror.blobGets()-m0; o != 0 || m != 2 {
		t.Errorf("blob downloads: origin %d, mirror %d; want 0 and 2", o, m)
	}

	// A mirror nothing listens on: the pull falls back to the origin.
	dead := newRegistry(t)
	dead.Close()
	o0 = origin.blobGets()
	s2, _ := newStore(t, Options{Config: parse(dead.host)})
	if _, err := s2.Pull(context.Background(), ref); err != nil {
		t.Fatalf("a dead mirror stopped the pull: %v", err)
	}
	if o := origin.blobGets() - o0; o != 2 {
		t.Errorf("origin served %d blobs after the dead mirror, want 2", o)
	}
	// Both dead: the error names the image and every source tried.
	origin.Close()
	s3, _ := newStore(t, Options{Config: parse(dead.host)})
	_, err = s3.Pull(context.Background(), ref)
	wantErr(t, err, ref, "from "+dead.host, "from "+origin.host)
	assertClean(t, s3, ref)
}

// TestSameSizeCorruption: a registry that serves a layer of the right
// length with the wrong bytes is caught by the digest check; nothing of the
// layer is stored, and the same store pulls it once the registry is sound.
func TestSameSizeCorruption(t *testing.T) {
	reg := newRegistry(t)
	img := imageOf(t, layerOf(t, entry{name: "f", body: strings.Repeat("data", 1<<16)}))
	ref := reg.host + "/corrupt/img:1"
	push(t, ref, img)
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	diff, _ := ls[0].DiffID()
	size, _ := ls[0].Size()
	reg.setWrap(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) {
			return false
		}
		b := make([]byte, size)
		rand.Read(b)
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.Write(b)
		return true
	})
	s, _ := newStore(t, Options{})
	_, err := s.Pull(context.Background(), ref)
	wantErr(t, err, ref, short(ld.String()))
	assertClean(t, s, ref)
	if exists(s.blobPath(ld.String())) || exists(s.layerPath(diff.String())) {
		t.Error("the corrupt layer was stored")
	}
	reg.setWrap(nil)
	if _, err := s.Pull(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
}

// TestSymlinkAcrossLayers: a symlink made by a lower layer and written
// through by an upper one never writes outside the root: unpacked per
// layer the upper one sees no link, and flattened (all layers into one
// directory) umoci resolves the link inside the root.
func TestSymlinkAcrossLayers(t *testing.T) {
	outside := t.TempDir()
	s, _ := newStore(t, Options{})
	img := imageOf(t,
		layerOf(t, entry{name: "evil", typ: '2', link: outside}, entry{name: "bin/", typ: '5'}, entry{name: "bin/sh", typ: '2', link: "/bin/busybox"}),
		layerOf(t, entry{name: "evil/pwned", body: "x"}))
	got, err := s.Resolve(context.Background(), writeLayout(t, img, "across"), "")
	if err != nil {
		t.Fatal(err)
	}
	sn, err := s.Snapshot(context.Background(), got, "across")
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Remove()
	noEscape(t, outside)
	// The positive control: an absolute link that is only a link stays.
	if l, err := os.Readlink(filepath.Join(sn.Rootfs(), "bin/sh")); err != nil || l != "/bin/busybox" {
		t.Errorf("bin/sh -> %q, %v", l, err)
	}
	if _, err := s.flatten(context.Background(), "across-test", got.Layers); err != nil {
		t.Fatal(err)
	}
	noEscape(t, outside)
	if b, err := os.ReadFile(filepath.Join(s.flatPath("across-test"), outside, "pwned")); err != nil || string(b) != "x" {
		t.Errorf("flattened: the write through the link is not inside the root: %q %v", b, err)
	}
}

func noEscape(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("written outside the image root: %s", filepath.Join(dir, e.Name()))
	}
}

// TestCancelledPullDoesNotFailOthers: when the job that started a download
// gives up (its context is cancelled), another job waiting on the same
// download does not fail with that job's cancellation: it downloads for
// itself.
func TestCancelledPullDoesNotFailOthers(t *testing.T) {
	reg := newRegistry(t)
	img := imageOf(t, layerOf(t, entry{name: "f", body: "shared"}))
	ref := reg.host + "/cancel/img:1"
	push(t, ref, img)
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	arrived, release := make(chan struct{}, 10), make(chan struct{})
	reg.setWrap(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) {
			arrived <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
				return true
			}
		}
		return false
	})
	s, _ := newStore(t, Options{})
	ctxA, cancelA := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() {
		_, err := s.Pull(ctxA, ref)
		errA <- err
	}()
	<-arrived // A is downloading the layer
	errB := make(chan error, 1)
	go func() {
		_, err := s.Pull(context.Background(), ref)
		errB <- err
	}()
	// B reaches the shared download and waits on it. (If it has not yet, it
	// starts its own after A's ends; the test then passes without showing
	// anything, never fails wrongly.)
	time.Sleep(200 * time.Millisecond)
	cancelA()
	if err := <-errA; err == nil {
		t.Error("the cancelled pull succeeded")
	}
	close(release)
	if err := <-errB; err != nil {
		t.Errorf("a pull waiting on a cancelled one failed: %v", err)
	}
	assertClean(t, s, "")
}

// TestRegistryNotAnswering: a registry that accepts the connection but
// never answers fails the pull after Options.ResponseTimeout even when
// the caller set no deadline, with an error naming the image and the
// cause; a mirror that does so is skipped for the registry itself.
func TestRegistryNotAnswering(t *testing.T) {
	reg, hung := newRegistry(t), newRegistry(t)
	ref := reg.host + "/hang/img:1"
	push(t, ref, imageOf(t, layerOf(t, entry{name: "f", body: "f"})))
	hung.setWrap(func(w http.ResponseWriter, r *http.Request) bool {
		<-r.Context().Done()
		return true
	})
	s, _ := newStore(t, Options{ResponseTimeout: 200 * time.Millisecond})
	_, err := s.Pull(context.Background(), hung.host+"/hang/img:1")
	wantErr(t, err, hung.host+"/hang/img:1", "timeout awaiting response headers")
	assertClean(t, s, hung.host+"/hang/img:1")

	cfg, err := config.Parse("config.hcl", []byte(fmt.Sprintf("registry %q { mirrors = [%q] }\n", reg.host, hung.host)))
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := newStore(t, Options{Config: cfg, ResponseTimeout: 200 * time.Millisecond})
	if _, err := s2.Pull(context.Background(), ref); err != nil {
		t.Errorf("a hung mirror stopped the pull: %v", err)
	}
}

// TestRegistryStallsMidBlob: a registry that starts sending a layer and
// then stops fails the pull after Options.ResponseTimeout of silence, with
// the cause in the error and nothing of the layer stored; the positive
// control pulls it from the same store once the registry behaves.
func TestRegistryStallsMidBlob(t *testing.T) {
	reg := newRegistry(t)
	body := make([]byte, 1<<20)
	rand.Read(body)
	img := imageOf(t, layerOf(t, entry{name: "f", body: string(body)}))
	ref := reg.host + "/stall/img:1"
	push(t, ref, img)
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	size, _ := ls[0].Size()
	reg.setWrap(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) {
			return false
		}
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.Write(make([]byte, size/2))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return true
	})
	s, _ := newStore(t, Options{ResponseTimeout: 300 * time.Millisecond})
	// A deadline far beyond the timeout, so that a missing stall check
	// fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := s.Pull(ctx, ref)
	t.Logf("stalled: %v", err)
	wantErr(t, err, ref, "stopped sending data", short(ld.String()))
	assertClean(t, s, ref)
	if exists(s.blobPath(ld.String())) {
		t.Error("a half layer was stored")
	}
	reg.setWrap(nil)
	if _, err := s.Pull(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
}
