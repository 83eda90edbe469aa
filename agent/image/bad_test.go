package image

import (
	"archive/tar"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"
)

// wantErr fails t unless err mentions every one of parts.
func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

func TestBadRegistryInput(t *testing.T) {
	reg := newRegistry(t)
	ref := reg.host + "/bad/img:1"
	img := imageOf(t, layerOf(t, entry{name: "f", body: "f"}))
	push(t, ref, img)
	s, _ := newStore(t, Options{})
	ctx := context.Background()

	_, err := s.Pull(ctx, reg.host+"/bad/nothere:1")
	wantErr(t, err, reg.host+"/bad/nothere:1", "no such")
	_, err = s.Pull(ctx, reg.host+"/bad/img:missing")
	wantErr(t, err, reg.host+"/bad/img:missing", "no such tag or digest")
	_, err = s.Pull(ctx, reg.host+"/bad/img@sha256:"+hex64)
	wantErr(t, err, "bad/img@sha256:"+hex64, "no such tag or digest")
	assertClean(t, s, ref)

	// A registry serving a layer whose bytes do not match its digest.
	d, _ := img.Digest()
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	reg.setWrap(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ld.String()) && r.Method == http.MethodGet {
			w.Write([]byte("not the layer"))
			return true
		}
		return false
	})
	_, err = s.Pull(ctx, ref)
	wantErr(t, err, ref, short(ld.String()))
	assertClean(t, s, reg.host+"/bad/img:1")
	if exists(s.blobPath(ld.String())) {
		t.Error("a corrupt blob was stored")
	}

	// A registry that never answers: the context's deadline ends the pull.
	reg.setWrap(func(w http.ResponseWriter, r *http.Request) bool {
		<-r.Context().Done()
		return true
	})
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = s.Pull(tctx, reg.host+"/bad/img@"+d.String())
	wantErr(t, err, "bad/img@"+d.String(), "deadline exceeded")
	assertClean(t, s, reg.host+"/bad/img@"+d.String())

	// Positive control: the same pull with a sound registry.
	reg.setWrap(nil)
	if _, err := s.Pull(ctx, ref); err != nil {
		t.Fatal(err)
	}
}

func TestAuth(t *testing.T) {
	reg := newRegistry(t)
	ref := reg.host + "/private/img:1"
	push(t, ref, imageOf(t, layerOf(t, entry{name: "f", body: "secret"})))
	reg.setWrap(func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == "ci" && p == "s3cret" {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	})
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no login from the machine
	s, _ := newStore(t, Options{})
	_, err := s.Pull(context.Background(), ref)
	wantErr(t, err, ref, "access denied")
	_, err = s.Pull(context.Background(), ref, Credential{Registry: reg.host, Username: "ci", Password: "wrong"})
	wantErr(t, err, ref, "access denied")
	assertClean(t, s, ref)
	if _, err := s.Pull(context.Background(), ref, Credential{Registry: reg.host, Username: "ci", Password: "s3cret"}); err != nil {
		t.Fatal(err)
	}
}

// TestHostileLayers: layers that try to write outside the root are refused
// with an error naming the image and the entry, and leave nothing behind.
func TestHostileLayers(t *testing.T) {
	s, _ := newStore(t, Options{})
	outside := filepath.Join(t.TempDir(), "outside")
	os.Mkdir(outside, 0o755)
	cases := map[string][]entry{
		"dotdot":   {{name: "../../../../../../" + outside[1:] + "/pwned", body: "x"}},
		"inner":    {{name: "a/", typ: tar.TypeDir}, {name: "a/../../escape", body: "x"}},
		"abs-link": {{name: "evil", typ: tar.TypeSymlink, link: outside}, {name: "evil/pwned", body: "x"}},
		"rel-link": {{name: "up", typ: tar.TypeSymlink, link: "../../../../../.."}, {name: "up" + outside + "/pwned", body: "x"}},
		"hardlink": {{name: "h", typ: tar.TypeLink, link: "../../../etc/passwd"}},
	}
	for n, entries := range cases {
		ref := writeLayout(t, imageOf(t, layerOf(t, entries...)), n)
		_, err := s.Resolve(context.Background(), ref, "")
		wantErr(t, err, ref, "refus")
		if err != nil && !strings.Contains(err.Error(), "outside") && !strings.Contains(err.Error(), "climbs out") {
			t.Errorf("%s: the error does not say why: %v", n, err)
		}
		assertClean(t, s, ref)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("written outside the root: %v", ents)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.dir, "layers")); len(ents) != 0 {
		t.Errorf("layers stored: %v", ents)
	}
	// Positive control: a symlink with an absolute target, not written
	// through, is fine.
	ok := writeLayout(t, imageOf(t, layerOf(t, entry{name: "lib", typ: tar.TypeSymlink, link: "/usr/lib"}, entry{name: "etc/", typ: tar.TypeDir}, entry{name: "etc/x", body: "x"})), "ok")
	if _, err := s.Resolve(context.Background(), ok, ""); err != nil {
		t.Fatal(err)
	}
}

// TestFullDisk pulls into a state dir on a tiny tmpfs.
func TestFullDisk(t *testing.T) {
	s0, _ := newStore(t, Options{}) // requires root
	_ = s0
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=2m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	s, err := Open(filepath.Join(dir, "images"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	random := make([]byte, 3<<20)
	for i := range random {
		random[i] = byte(i*7919 + i>>8)
	}
	ref := writeLayout(t, imageOf(t, layerOf(t, entry{name: "big", body: string(random)})), "big")
	_, err = s.Resolve(context.Background(), ref, "")
	wantErr(t, err, ref, "no space left on device")
	assertClean(t, s, ref)
	// Positive control: a small image fits.
	if _, err := s.Resolve(context.Background(), writeLayout(t, imageOf(t, layerOf(t, entry{name: "small", body: "s"})), "s"), ""); err != nil {
		t.Fatal(err)
	}
}

// TestImport imports a docker save archive and an OCI archive, and refuses
// corrupt and truncated ones.
func TestImport(t *testing.T) {
	s, _ := newStore(t, Options{})
	img := whiteoutImage(t)
	dir := t.TempDir()

	docker := filepath.Join(dir, "docker.tar")
	tag, _ := name.NewTag("example.com/team/tool:2")
	if err := tarball.WriteToFile(docker, tag, img); err != nil {
		t.Fatal(err)
	}
	imgs, err := s.Import(context.Background(), docker, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Ref != "example.com/team/tool:2" || imgs[0].Config.User != "65534" {
		t.Fatalf("docker import = %+v", imgs)
	}
	sn, err := s.Snapshot(context.Background(), imgs[0], "import")
	if err != nil {
		t.Fatal(err)
	}
	checkWhiteouts(t, sn.Rootfs())
	sn.Remove()

	// An OCI archive: a tar of a layout, named by containerd's annotation
	// or by --as.
	layoutRef := writeLayout(t, img, "v1")
	oci := filepath.Join(dir, "oci.tar")
	tarDir(t, strings.TrimSuffix(strings.TrimPrefix(layoutRef, LayoutPrefix), ":v1"), oci)
	_, err = s.Import(context.Background(), oci, "")
	wantErr(t, err, oci, "no name", "--as")
	imgs, err = s.Import(context.Background(), oci, "tool:oci")
	if err != nil {
		t.Fatal(err)
	}
	if imgs[0].Ref != "docker.io/library/tool:oci" {
		t.Errorf("oci import = %s", imgs[0].Ref)
	}

	// Truncated and corrupt archives.
	b, _ := os.ReadFile(oci)
	trunc := filepath.Join(dir, "trunc.tar")
	os.WriteFile(trunc, b[:len(b)/2], 0o644)
	_, err = s.Import(context.Background(), trunc, "tool:trunc")
	wantErr(t, err, trunc, "corrupt or truncated")
	junk := filepath.Join(dir, "junk.tar")
	os.WriteFile(junk, []byte(strings.Repeat("junk", 1000)), 0o644)
	_, err = s.Import(context.Background(), junk, "tool:junk")
	wantErr(t, err, junk)
	// A layer blob with one byte changed.
	bad := filepath.Join(dir, "bad.tar")
	corruptLayer(t, docker, bad)
	// (into a fresh store: this one has the sound blobs already and would
	// rightly not read the archive's)
	fresh, _ := newStore(t, Options{})
	_, err = fresh.Import(context.Background(), bad, "tool:bad")
	wantErr(t, err, bad, "tool:bad", "corrupt")
	assertClean(t, fresh, "docker.io/library/tool:bad")
}

// tarDir writes the files of dir into a tar file.
func tarDir(t *testing.T, dir, file string) {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// corruptLayer copies a docker archive, flipping a byte in the middle of
// every layer file.
func corruptLayer(t *testing.T, in, out string) {
	t.Helper()
	f, _ := os.Open(in)
	defer f.Close()
	o, _ := os.Create(out)
	defer o.Close()
	tr, tw := tar.NewReader(f), tar.NewWriter(o)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if strings.HasSuffix(h.Name, ".tar.gz") {
			b[len(b)/2] ^= 0xff
		}
		tw.WriteHeader(h)
		tw.Write(b)
	}
	tw.Close()
}
