package image

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/jobrun/jobrun/agent/config"
	"github.com/jobrun/jobrun/internal/testenv"
)

func TestParseRef(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                     "docker.io/library/busybox:latest",
		"golang:1.23":                 "docker.io/library/golang:1.23",
		"docker.io/o/r:t":             "docker.io/o/r:t",
		"ghcr.io/o/r@sha256:" + hex64: "ghcr.io/o/r@sha256:" + hex64,
		"127.0.0.1:5000/a/b":          "127.0.0.1:5000/a/b:latest",
	} {
		r, err := ParseRef(in)
		if err != nil || r.String() != want {
			t.Errorf("ParseRef(%q) = %v, %v; want %s", in, r, err, want)
		}
	}
	for _, bad := range []string{"", "UPPER/case", "a:b:c", "oci-layout:/x", "x@sha256:short"} {
		if _, err := ParseRef(bad); err == nil {
			t.Errorf("ParseRef(%q) succeeded", bad)
		}
	}
	l, err := parseLayout("oci-layout:imgs/busybox:1.0", "/jobs")
	if err != nil || l.dir != "/jobs/imgs/busybox" || l.tag != "1.0" {
		t.Errorf("parseLayout = %+v, %v", l, err)
	}
	l, err = parseLayout("oci-layout:/abs/dir", "/jobs")
	if err != nil || l.dir != "/abs/dir" || l.tag != "" {
		t.Errorf("parseLayout = %+v, %v", l, err)
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestPull pulls a Docker schema2 image through the registry, checks what
// the store holds (OCI media types, the config, unpacked layers), and that a
// second pull and Resolve download nothing.
func TestPull(t *testing.T) {
	reg := newRegistry(t)
	img := imageOf(t,
		layerOf(t, entry{name: "etc/", typ: '5'}, entry{name: "etc/hello", body: "hello\n"}),
		layerOf(t, entry{name: "bin/", typ: '5'}, entry{name: "bin/tool", body: "#!/bin/sh\n", mode: 0o755}))
	ref := reg.host + "/test/pull:1"
	push(t, ref, img)
	before := reg.blobGets()

	var progress strings.Builder
	s, _ := newStore(t, Options{Progress: &syncWriter{w: &progress}})
	got, err := s.Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if n := reg.blobGets() - before; n != 3 {
		t.Errorf("first pull: %d blob downloads, want 3 (config and two layers)", n)
	}
	d, _ := img.Digest()
	if got.Digest != d.String() || got.Ref != reg.host+"/test/pull:1" {
		t.Errorf("image = %s %s", got.Ref, got.Digest)
	}
	if got.Config.User != "65534" || got.Config.WorkingDir != "/w" || strings.Join(got.Config.Env, " ") != "PATH=/bin A=1" || got.Config.Cmd[0] != "sh" {
		t.Errorf("config = %+v", got.Config)
	}
	// The store holds the OCI form: manifest, config and layer media types.
	raw, err := s.readBlob(got.Manifest, maxConfig)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		MediaType string
		Config    struct{ MediaType string }
		Layers    []struct{ MediaType, Digest string }
	}
	mustJSON(t, raw, &m)
	if m.MediaType != string(types.OCIManifestSchema1) || m.Config.MediaType != string(types.OCIConfigJSON) || m.Layers[0].MediaType != string(types.OCILayer) {
		t.Errorf("stored manifest is not OCI: %s", raw)
	}
	if got.Manifest == got.Digest {
		t.Error("a converted manifest kept the Docker digest")
	}
	for i, l := range got.Layers {
		if m.Layers[i].Digest != l.Digest || !exists(s.blobPath(l.Digest)) || !exists(s.layerPath(l.DiffID)) {
			t.Errorf("layer %d not stored as %s", i, l.Digest)
		}
	}
	if b, err := os.ReadFile(filepath.Join(s.layerPath(got.Layers[0].DiffID), "etc/hello")); err != nil || string(b) != "hello\n" {
		t.Errorf("unpacked layer: %q %v", b, err)
	}
	if !strings.Contains(progress.String(), "done") {
		t.Errorf("progress = %q", progress.String())
	}

	before = reg.blobGets()
	if _, err := s.Pull(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve(context.Background(), ref, ""); err != nil {
		t.Fatal(err)
	}
	if n := reg.blobGets() - before; n != 0 {
		t.Errorf("second pull and resolve: %d blob downloads, want 0", n)
	}
	assertClean(t, s, "")
}

type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestConcurrentPulls: two pulls of one image at once do one download of
// each blob, counted at the registry.
func TestConcurrentPulls(t *testing.T) {
	reg := newRegistry(t)
	big := strings.Repeat("x", 4<<20)
	img := imageOf(t, layerOf(t, entry{name: "a", body: big}), layerOf(t, entry{name: "b", body: big + "b"}))
	ref := reg.host + "/test/concurrent:1"
	push(t, ref, img)
	before := reg.blobGets()
	// Slow blob responses so that the pulls overlap.
	reg.setWrap(func(w http.ResponseWriter, r *http.Request) bool {
		time.Sleep(50 * time.Millisecond)
		return false
	})
	s, _ := newStore(t, Options{})
	pullAll(t, ref, s, s, s, s)
	assertEachBlobOnce(t, reg, before, 3)
}

// pullAll pulls ref with each store at once and fails t on any error.
func pullAll(t *testing.T, ref string, stores ...*Store) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(stores))
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Pull(context.Background(), ref)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// assertEachBlobOnce fails t unless the registry served want blob
// downloads since before, none of a blob twice.
func assertEachBlobOnce(t *testing.T, reg *testRegistry, before, want int) {
	t.Helper()
	reg.mu.Lock()
	defer reg.mu.Unlock()
	for d, n := range reg.gets {
		if n > 1 {
			t.Errorf("blob %s downloaded %d times", short(d), n)
		}
	}
	if n := reg.blobGetsLocked() - before; n != want {
		t.Errorf("%d blob downloads, want %d", n, want)
	}
}

func (r *testRegistry) blobGetsLocked() int {
	n := 0
	for _, c := range r.gets {
		n += c
	}
	return n
}

// TestSharedLayers: a second image on the same base downloads and unpacks
// only its own layer.
func TestSharedLayers(t *testing.T) {
	reg := newRegistry(t)
	base := layerOf(t, entry{name: "base", body: "base"})
	push(t, reg.host+"/test/a:1", imageOf(t, base, layerOf(t, entry{name: "a", body: "a"})))
	push(t, reg.host+"/test/b:1", imageOf(t, base, layerOf(t, entry{name: "b", body: "b"})))
	s, _ := newStore(t, Options{})
	a, err := s.Pull(context.Background(), reg.host+"/test/a:1")
	if err != nil {
		t.Fatal(err)
	}
	baseDir := s.layerPath(a.Layers[0].DiffID)
	fi, _ := os.Stat(baseDir)
	before := reg.blobGets()
	b, err := s.Pull(context.Background(), reg.host+"/test/b:1")
	if err != nil {
		t.Fatal(err)
	}
	if n := reg.blobGets() - before; n != 2 {
		t.Errorf("second image: %d blob downloads, want 2 (config and its own layer)", n)
	}
	fi2, _ := os.Stat(baseDir)
	if b.Layers[0].DiffID != a.Layers[0].DiffID || !os.SameFile(fi, fi2) {
		t.Error("the base layer was unpacked again")
	}
}

// TestPolicy: IfMissing needs no registry once stored; Always notices a
// moved tag; Never refuses what is not stored.
func TestPolicy(t *testing.T) {
	reg := newRegistry(t)
	ref := reg.host + "/test/policy:1"
	push(t, ref, imageOf(t, layerOf(t, entry{name: "v1", body: "1"})))
	state := t.TempDir()
	open := func(p Policy) *Store {
		testenv.RequireRoot(t)
		s, err := Open(filepath.Join(state, "images"), Options{Policy: p})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if _, err := open(Never).Resolve(context.Background(), ref, ""); err == nil || !strings.Contains(err.Error(), "not in the store") {
		t.Errorf("Never on an empty store: %v", err)
	}
	v1, err := open(IfMissing).Resolve(context.Background(), ref, "")
	if err != nil {
		t.Fatal(err)
	}
	push(t, ref, imageOf(t, layerOf(t, entry{name: "v2", body: "2"})))
	if got, err := open(IfMissing).Resolve(context.Background(), ref, ""); err != nil || got.Digest != v1.Digest {
		t.Errorf("IfMissing re-pulled a stored tag: %v", err)
	}
	v2, err := open(Always).Resolve(context.Background(), ref, "")
	if err != nil || v2.Digest == v1.Digest {
		t.Errorf("Always did not notice the moved tag: %v", err)
	}
	// A digest reference is found by digest, with the registry gone.
	reg.Close()
	if got, err := open(Always).Resolve(context.Background(), reg.host+"/test/policy@"+v2.Digest, ""); err != nil || got.Digest != v2.Digest {
		t.Errorf("digest ref with the registry down: %v", err)
	}
	if _, err := open(IfMissing).Resolve(context.Background(), ref, ""); err != nil {
		t.Errorf("IfMissing with the registry down: %v", err)
	}
}

// TestMirror pulls docker.io/library/NAME through Debian's docker-registry
// configured as a mirror, the way the demo serves busybox.
func TestMirror(t *testing.T) {
	host := testenv.RequireEnv(t, "JOBRUN_TEST_REGISTRY", "Debian's docker-registry on loopback")
	repo := fmt.Sprintf("jobrun-test-%d", time.Now().UnixNano())
	img := imageOf(t, layerOf(t, entry{name: "hello", body: "from the mirror"}))
	if dir := os.Getenv("JOBRUN_TEST_IMAGES"); dir != "" {
		p, err := layout.FromPath(filepath.Join(dir, "busybox"))
		if err != nil {
			t.Fatal(err)
		}
		idx, err := p.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		m, _ := idx.IndexManifest()
		if img, err = idx.Image(m.Manifests[0].Digest); err != nil {
			t.Fatal(err)
		}
	}
	push(t, host+"/library/"+repo+":latest", img)
	cfg, err := config.Parse("config.hcl", []byte(fmt.Sprintf(`
registry "docker.io" { mirrors = [%q] }
registry %q { insecure = true }
`, host, host)))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := newStore(t, Options{Config: cfg})
	got, err := s.Pull(context.Background(), repo)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	if got.Ref != "docker.io/library/"+repo+":latest" || got.Digest != d.String() {
		t.Errorf("pulled %s %s, want docker.io/library/%s %s", got.Ref, got.Digest, repo, d)
	}
	// Without the mirror, docker.io itself is tried (and unreachable here).
	s2, _ := newStore(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s2.Pull(ctx, repo); err == nil {
		t.Error("pulled from docker.io without the mirror")
	}
}
