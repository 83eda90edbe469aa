package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/jobrun/jobrun/internal/testenv"
)

// TestMain lets a test re-run this binary as a child that holds a snapshot
// until it is killed (see holdSnapshot).
func TestMain(m *testing.M) {
	if os.Getenv("JOBRUN_IMAGE_TEST_CHILD") != "" {
		holdSnapshotChild()
		return
	}
	os.Exit(m.Run())
}

// entry is one tar entry of a test layer.
type entry struct {
	name string
	typ  byte // tar.TypeReg if zero
	body string
	link string
	mode int64
	uid  int
	gid  int
}

// layerOf makes a gzip layer (Docker media type) from entries.
func layerOf(t testing.TB, entries ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: time.Unix(1e9, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			io.WriteString(tw, e.body)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// imageOf makes a Docker schema2 image of layers with a config that the
// store records.
func imageOf(t testing.TB, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Env: []string{"PATH=/bin", "A=1"}, User: "65534", WorkingDir: "/w", Cmd: []string{"sh"}})
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf.OS, cf.Architecture = "linux", "amd64"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// testRegistry is go-containerregistry's in-process registry behind a
// handler that counts blob downloads, as the registry sees them.
type testRegistry struct {
	*httptest.Server
	host string
	mu   sync.Mutex
	gets map[string]int // blob GETs by digest
	wrap func(http.ResponseWriter, *http.Request) bool
}

func newRegistry(t testing.TB) *testRegistry {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r := &testRegistry{gets: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		wrap := r.wrap
		r.mu.Unlock()
		if wrap != nil && wrap(w, req) {
			return
		}
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:") {
			r.mu.Lock()
			r.gets[filepath.Base(req.URL.Path)]++
			r.mu.Unlock()
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(r.Close)
	r.host = strings.TrimPrefix(r.URL, "http://")
	return r
}

// setWrap sets a handler that runs before the registry's and answers
// instead of it when it returns true; nil removes it.
func (r *testRegistry) setWrap(f func(http.ResponseWriter, *http.Request) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.wrap = f
}

// blobGets is how many blob downloads the registry served.
func (r *testRegistry) blobGets() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.gets {
		n += c
	}
	return n
}

func push(t testing.TB, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

// newStore opens a store in a fresh state dir, as root.
func newStore(t testing.TB, opts Options) (*Store, string) {
	t.Helper()
	testenv.RequireRoot(t)
	state := t.TempDir()
	s, err := Open(filepath.Join(state, "images"), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, state
}

// assertClean fails t if the store holds anything unfinished or an
// image record for ref.
func assertClean(t testing.TB, s *Store, ref string) {
	t.Helper()
	tmp, _ := os.ReadDir(s.tmpDir())
	for _, e := range tmp {
		t.Errorf("left in tmp/: %s", e.Name())
	}
	if ref != "" {
		if _, err := s.get(ref); err == nil {
			t.Errorf("a record for %s was written", ref)
		}
	}
}

// testImages returns the dir of the layouts scripts/testimages.sh built.
func testImages(t testing.TB) string {
	t.Helper()
	return testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES", "test images built by scripts/testimages.sh")
}

func mustJSON(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// holdSnapshot starts a child process that mounts a snapshot id of ref in
// the store at dir and holds it until killed.
func holdSnapshot(t *testing.T, dir, ref, id string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "JOBRUN_IMAGE_TEST_CHILD="+strings.Join([]string{dir, ref, id}, "\n"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 6)
	if _, err := io.ReadFull(out, line); err != nil || string(line) != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q %v", line, err)
	}
	return cmd
}

func holdSnapshotChild() {
	args := strings.Split(os.Getenv("JOBRUN_IMAGE_TEST_CHILD"), "\n")
	s, err := Open(args[0], Options{})
	if err == nil {
		var img *Image
		if img, err = s.Get(args[1]); err == nil {
			_, err = s.Snapshot(context.Background(), img, args[2])
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	select {}
}
