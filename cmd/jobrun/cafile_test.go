package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/testenv"
)

// layerFile is one entry of a test layer: a file with body, a file copied
// from the host (from), a symbolic link (link) or a directory (dir).
type layerFile struct {
	name, body, from, link string
	dir                    bool
	uid, gid               int
}

// derivedImage writes an OCI layout of the base layout's image plus one
// layer of files and env in its config, and returns its oci-layout
// reference.
func derivedImage(t *testing.T, base string, files []layerFile, env ...string) string {
	t.Helper()
	img := layoutImage(t, base)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: strings.TrimPrefix(f.name, "/"), Mode: 0o644, ModTime: time.Unix(1e9, 0), Typeflag: tar.TypeReg, Uid: f.uid, Gid: f.gid}
		body := []byte(f.body)
		switch {
		case f.dir:
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case f.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.link
		case f.from != "":
			st, err := os.Stat(f.from)
			if err != nil {
				t.Fatal(err)
			}
			if body, err = os.ReadFile(f.from); err != nil {
				t.Fatal(err)
			}
			h.Mode = int64(st.Mode().Perm())
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, l); err != nil {
		t.Fatal(err)
	}
	if len(env) > 0 {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.Config.Env = append(cf.Config.Env, env...)
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	out, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "latest"})); err != nil {
		t.Fatal(err)
	}
	return "oci-layout:" + dir + ":latest"
}

// hostBinaries are layer entries for programs of the host (Debian 12, as
// the test images) with every library they load, each at its real path
// (the images are merged-/usr too) under the name the loader asks for.
func hostBinaries(t *testing.T, progs ...string) []layerFile {
	t.Helper()
	seen := map[string]bool{}
	var files []layerFile
	add := func(p string) {
		dir, err := filepath.EvalSymlinks(filepath.Dir(p))
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Join(dir, filepath.Base(p))
		if seen[name] {
			return
		}
		seen[name] = true
		for d := dir; d != "/" && !seen[d]; d = filepath.Dir(d) {
			seen[d] = true
			files = append(files, layerFile{name: d, dir: true})
		}
		files = append(files, layerFile{name: name, from: p})
	}
	for _, p := range progs {
		add(p)
		out, err := exec.Command("ldd", p).Output()
		if err != nil {
			t.Fatalf("ldd %s: %v", p, err)
		}
		for _, f := range strings.Fields(string(out)) {
			if strings.HasPrefix(f, "/") {
				add(f)
			}
		}
	}
	// Directories first, each after its parent, as tar writers do.
	sort.SliceStable(files, func(i, j int) bool {
		if files[i].dir != files[j].dir {
			return files[i].dir
		}
		return files[i].dir && files[i].name < files[j].name
	})
	return files
}

// buildTLSGet builds testdata/tlsget static, a Go client that verifies
// with the system roots, into dir.
func buildTLSGet(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "tlsget"), "./testdata/tlsget")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build tlsget: %v\n%s", err, out)
	}
}

// gitServer is a handler serving a bare repository with one commit over
// git's smart HTTP (git-http-backend), and that commit.
func gitServer(t *testing.T) (http.Handler, string) {
	t.Helper()
	git := testenv.RequireTool(t, "git")
	root := t.TempDir()
	repo := filepath.Join(root, "repo.git")
	run := func(args ...string) string {
		cmd := exec.Command(git, args...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	run("init", "-q", "--bare", repo)
	tree := run("-C", repo, "mktree")
	commit := run("-C", repo, "commit-tree", tree, "-m", "one")
	run("-C", repo, "update-ref", "refs/heads/main", commit)
	out := run("--exec-path")
	return &cgi.Handler{
		Path: filepath.Join(out, "git-http-backend"),
		Root: "/git",
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}, commit
}

// treeDigest sums every name, mode, link and content under dir: the image
// store's unpacked layers, which no job may change.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d\n", p, st.Mode(), st.Size())
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintln(h, l)
		case st.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// checkScript defines check NAME CMD...: it runs CMD and says "RESULT NAME
// ok: OUTPUT" or "RESULT NAME failed: ERROR", always succeeding, so one
// step reports every client.
const checkScript = `check() {
  name=$1; shift
  if "$@" >/tmp/out 2>/tmp/err; then echo "RESULT $name ok: $(head -c 80 /tmp/out | tr '\n' ' ')"
  else echo "RESULT $name failed: $(head -c 300 /tmp/err | tr '\n' ' ')"; fi
}
`

// caJobs is the job file of TestLocalCAFileTrustedByClients: each job's
// step checks its image's clients against the server signed by the extra
// CA ($EXTRA) and the one signed by the image's own CA ($IMAGE_CA_URL).
const caJobs = `
job "debian" {
  image   = "DEBIAN"
  network = "host"
  step "clients" {
    run = <<-EOT
      CHECK
      check curl-extra curl -fsS "$EXTRA"
      check curl-image curl -fsS "$IMAGE_CA_URL"
      check git-extra git ls-remote "$EXTRA/git/repo.git" refs/heads/main
      check go-extra ./tlsget "$EXTRA"
      check go-default-path-extra env -u SSL_CERT_FILE ./tlsget "$EXTRA"
      check go-image ./tlsget "$IMAGE_CA_URL"
      check count-bundle grep -c BEGIN /dev/.jobrun/ca-certificates.crt
      check count-extra grep -c BEGIN /dev/.jobrun/extra-ca-certificates.crt
    EOT
  }
}
job "alpine-like" {
  image   = "ALPINE"
  network = "host"
  step "clients" {
    run = <<-EOT
      CHECK
      check go-cert-pem-extra env SSL_CERT_FILE=/etc/ssl/cert.pem ./tlsget "$EXTRA"
      check go-ca-certificates-extra env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt ./tlsget "$EXTRA"
      check go-image ./tlsget "$IMAGE_CA_URL"
      check write-bundle sh -c 'echo x >> /etc/ssl/cert.pem'
    EOT
  }
}
job "rhel-like" {
  image   = "RHEL"
  network = "host"
  step "clients" {
    run = <<-EOT
      CHECK
      check go-ca-bundle-extra env SSL_CERT_FILE=/etc/pki/tls/certs/ca-bundle.crt ./tlsget "$EXTRA"
      check go-tls-ca-bundle-extra env SSL_CERT_FILE=/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem ./tlsget "$EXTRA"
      check go-image ./tlsget "$IMAGE_CA_URL"
    EOT
  }
}
job "env-bundle" {
  image   = "ENVIMAGE"
  network = "host"
  env     = { REQUESTS_CA_BUNDLE = "/mine.pem" }
  step "clients" {
    run = <<-EOT
      CHECK
      check go-env-extra ./tlsget "$EXTRA"
      check go-custom-extra env SSL_CERT_FILE=/opt/ca/custom.pem ./tlsget "$EXTRA"
      check go-image ./tlsget "$IMAGE_CA_URL"
      echo "ENV SSL_CERT_FILE=$SSL_CERT_FILE NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS REQUESTS_CA_BUNDLE=$REQUESTS_CA_BUNDLE GIT_SSL_CAINFO=$GIT_SSL_CAINFO"
    EOT
  }
}
`

// TestLocalCAFileTrustedByClients: a TLS server signed by a CA the images
// do not know is refused by curl, git and Go in jobs without a CA file, and
// reached by every one of them with --ca-file and with the config's
// ca_file, through the bundle mounted over each distribution's bundle
// path (Debian, Alpine, RHEL layouts, links included, and a bundle the
// image's environment names) and the variables. The image's own CAs stay
// trusted, the bundle is read-only, and the
// image's unpacked layers are the same after as before.
func TestLocalCAFileTrustedByClients(t *testing.T) {
	images := testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES", "test images built by scripts/testimages.sh")
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "ldd")
	curl := testenv.RequireTool(t, "curl")
	git := testenv.RequireTool(t, "git")

	extraCA, imageCA := newTestCA(t, "jobrun test proxy CA"), newTestCA(t, "jobrun test image CA")
	gitH, commit := gitServer(t)
	mux := http.NewServeMux()
	mux.Handle("/git/", gitH)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello-through-extra-ca") })
	extra := extraCA.serve(t, mux)
	imageSrv := imageCA.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello-through-image-ca") }))

	gitRemote := filepath.Join(strings.TrimSpace(mustOutput(t, git, "--exec-path")), "git-remote-https")
	debian := derivedImage(t, filepath.Join(images, "debian"), append(hostBinaries(t, curl, git, gitRemote),
		layerFile{name: "/etc/ssl", dir: true}, layerFile{name: "/etc/ssl/certs", dir: true},
		layerFile{name: "/etc/ssl/certs/ca-certificates.crt", body: string(imageCA.pem)}))
	alpine := derivedImage(t, filepath.Join(images, "busybox"), []layerFile{
		{name: "/etc/ssl", dir: true}, {name: "/etc/ssl/certs", dir: true},
		{name: "/etc/ssl/certs/ca-certificates.crt", body: string(imageCA.pem)},
		{name: "/etc/ssl/cert.pem", link: "certs/ca-certificates.crt"},
	})
	rhel := derivedImage(t, filepath.Join(images, "busybox"), []layerFile{
		{name: "/etc/pki", dir: true}, {name: "/etc/pki/tls", dir: true}, {name: "/etc/pki/tls/certs", dir: true},
		{name: "/etc/pki/ca-trust", dir: true}, {name: "/etc/pki/ca-trust/extracted", dir: true},
		{name: "/etc/pki/ca-trust/extracted/pem", dir: true},
		{name: "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", body: string(imageCA.pem)},
		{name: "/etc/pki/tls/certs/ca-bundle.crt", link: "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"},
	})

	dir := t.TempDir()
	buildTLSGet(t, dir)
	// Its own bundle at a path of its own, which its environment names.
	envImage := derivedImage(t, filepath.Join(images, "busybox"), []layerFile{
		{name: "/opt", dir: true}, {name: "/opt/ca", dir: true}, {name: "/opt/ca/custom.pem", body: string(imageCA.pem)},
	}, "SSL_CERT_FILE=/opt/ca/custom.pem")
	ci := strings.NewReplacer("DEBIAN", debian, "ALPINE", alpine, "RHEL", rhel, "ENVIMAGE", envImage,
		"CHECK", strings.ReplaceAll(checkScript, "\n", "\n      ")).Replace(caJobs)
	file := filepath.Join(dir, ".ci.hcl")
	caFile := filepath.Join(dir, "proxy-ca.pem")
	for name, body := range map[string]string{".ci.hcl": ci, "proxy-ca.pem": string(extraCA.pem)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfgDir := t.TempDir()
	hostOnly := filepath.Join(cfgDir, "host.hcl")
	withCA := filepath.Join(cfgDir, "ca.hcl")
	if err := os.WriteFile(filepath.Join(cfgDir, "ca.pem"), extraCA.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		hostOnly: "network {\n  allow_host = true\n}\n",
		withCA:   "ca_file = \"ca.pem\"\nnetwork {\n  allow_host = true\n}\n", // relative to the config
	} {
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := newTestHost(t)
	env := []string{"--env", "EXTRA=" + extra.URL, "--env", "IMAGE_CA_URL=" + imageSrv.URL}

	// Without a CA file: the server of the extra CA is refused by every
	// client, the image's CA is trusted (the positive control of the
	// servers and clients), and the image's bundle is the job's to write.
	r := h.local(t, file, append([]string{"--config", hostOnly}, env...)...)
	if r.code != 0 {
		t.Fatalf("without a CA file: exit %d", r.code)
	}
	layers := filepath.Join(h.state, "images", "layers")
	before := treeDigest(t, layers)
	for _, c := range []string{"curl-extra", "git-extra", "go-extra", "go-default-path-extra", "go-cert-pem-extra",
		"go-ca-certificates-extra", "go-ca-bundle-extra", "go-tls-ca-bundle-extra", "go-env-extra", "go-custom-extra"} {
		wantResult(t, r.out, c, `failed: .*(certificate|issuer|unknown authority)`)
	}
	for _, c := range []string{"curl-image", "go-image", "write-bundle"} {
		wantResult(t, r.out, c, `ok`)
	}
	for _, c := range []string{"count-bundle", "count-extra"} {
		wantResult(t, r.out, c, `failed: .*No such file`)
	}
	order(t, r.out, `ENV SSL_CERT_FILE=/opt/ca/custom.pem NODE_EXTRA_CA_CERTS= REQUESTS_CA_BUNDLE=/mine.pem GIT_SSL_CAINFO=\n`)

	// With --ca-file, then with the config's ca_file: every client gets
	// through, the image's CA still counts, the bundle is read-only.
	for _, args := range [][]string{
		{"--config", hostOnly, "--ca-file", caFile},
		{"--config", withCA},
	} {
		r := h.local(t, file, append(args, env...)...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d", args, r.code)
		}
		for _, c := range []string{"curl-extra", "go-extra", "go-default-path-extra", "go-cert-pem-extra",
			"go-ca-certificates-extra", "go-ca-bundle-extra", "go-tls-ca-bundle-extra", "go-env-extra", "go-custom-extra"} {
			wantResult(t, r.out, c, `ok: hello-through-extra-ca`)
		}
		wantResult(t, r.out, "git-extra", `ok: `+commit+`\s+refs/heads/main`)
		wantResult(t, r.out, "curl-image", `ok: hello-through-image-ca`)
		wantResult(t, r.out, "go-image", `ok: hello-through-image-ca`)
		wantResult(t, r.out, "write-bundle", `failed: .*Read-only file system`)
		wantResult(t, r.out, "count-bundle", `ok: 2 `) // the image's CA and the extra one
		wantResult(t, r.out, "count-extra", `ok: 1 `)
		order(t, r.out, `ENV SSL_CERT_FILE=/dev/.jobrun/ca-certificates.crt NODE_EXTRA_CA_CERTS=/dev/.jobrun/ca-certificates.crt `+
			`REQUESTS_CA_BUNDLE=/mine.pem GIT_SSL_CAINFO=/dev/.jobrun/ca-certificates.crt\n`)
		order(t, r.out, `alpine-like · CA bundle: extra certificates at /dev/.jobrun/ca-certificates.crt \(mounted over the image's /etc/ssl/certs/ca-certificates.crt\)`)
		order(t, r.out, `rhel-like · CA bundle: .* \(mounted over the image's /etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem\)`)
		order(t, r.out, `env-bundle · CA bundle: .* \(mounted over the image's /opt/ca/custom.pem\)`)
	}
	if after := treeDigest(t, layers); after != before {
		t.Errorf("the image store's layers changed: %s before, %s after", before, after)
	}
}

// wantResult fails t unless out has a RESULT line of check name and each
// one matches want.
func wantResult(t *testing.T, out, name, want string) {
	t.Helper()
	ms := regexp.MustCompile(`RESULT `+regexp.QuoteMeta(name)+` ([^\n]*)`).FindAllStringSubmatch(out, -1)
	if ms == nil {
		t.Errorf("no RESULT of %s", name)
	}
	for _, m := range ms {
		if !regexp.MustCompile(`^` + want).MatchString(m[1]) {
			t.Errorf("%s: %q, want %q", name, m[1], want)
		}
	}
}

func mustOutput(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out)
}

// TestCABundleNeverReadsOrWritesHostFiles: an image whose bundle paths are
// links out of its root (absolute, "../" climbing, through /proc) and at
// a directory gets the extra CAs all the same, and no host file is read
// into its bundle, written, or mounted over; its layers do not change.
func TestCABundleNeverReadsOrWritesHostFiles(t *testing.T) {
	images := testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES", "test images built by scripts/testimages.sh")
	testenv.RequireRoot(t)
	extraCA := newTestCA(t, "jobrun test proxy CA")
	extra := extraCA.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello-through-extra-ca") }))

	secretDir := t.TempDir()
	secret := filepath.Join(secretDir, "host-bundle.pem")
	marker := "HOST-ONLY-" + hex.EncodeToString(extraCA.cert.SerialNumber.Bytes())
	if err := os.WriteFile(secret, []byte(marker+"\n"+string(newTestCA(t, "host-only CA").pem)), 0o600); err != nil {
		t.Fatal(err)
	}
	was, err := os.Stat(secret)
	if err != nil {
		t.Fatal(err)
	}
	wasBody, _ := os.ReadFile(secret)
	hostile := derivedImage(t, filepath.Join(images, "busybox"), []layerFile{
		{name: "/etc/ssl", dir: true}, {name: "/etc/ssl/certs", dir: true},
		{name: "/etc/ssl/certs/ca-certificates.crt", link: secret},
		{name: "/etc/ssl/cert.pem", link: strings.Repeat("../", 12) + strings.TrimPrefix(secret, "/")},
		{name: "/etc/ssl/ca-bundle.pem", link: "/etc"},
		{name: "/etc/pki", dir: true}, {name: "/etc/pki/tls", dir: true}, {name: "/etc/pki/tls/certs", dir: true},
		{name: "/etc/pki/tls/certs/ca-bundle.crt", link: "/proc/self/root" + secret},
		{name: "/etc/pki/ca-trust", dir: true}, {name: "/etc/pki/ca-trust/extracted", dir: true},
		{name: "/etc/pki/ca-trust/extracted/pem", dir: true},
		{name: "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", link: secretDir},
	})
	dir := t.TempDir()
	buildTLSGet(t, dir)
	ci := strings.NewReplacer("HOSTILE", hostile, "CHECK", strings.ReplaceAll(checkScript, "\n", "\n      ")).Replace(`
job "hostile" {
  image   = "HOSTILE"
  network = "host"
  step "look" {
    run = <<-EOT
      CHECK
      check go-extra ./tlsget "$EXTRA"
      check read-link cat /etc/ssl/certs/ca-certificates.crt
      check certificates grep -c BEGIN "$${SSL_CERT_FILE:-/nonexistent}"
      cat "$${SSL_CERT_FILE:-/dev/null}"
    EOT
  }
}
`)
	file := filepath.Join(dir, ".ci.hcl")
	caFile := filepath.Join(dir, "proxy-ca.pem")
	for name, body := range map[string]string{file: ci, caFile: string(extraCA.pem)} {
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(t.TempDir(), "config.hcl")
	if err := os.WriteFile(cfg, []byte("network {\n  allow_host = true\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newTestHost(t)
	args := []string{"--config", cfg, "--env", "EXTRA=" + extra.URL}

	// Without a CA file, the positive control: the links lead nowhere in
	// the container, and the server is not trusted.
	r := h.local(t, file, args...)
	if r.code != 0 {
		t.Fatalf("without a CA file: exit %d", r.code)
	}
	wantResult(t, r.out, "go-extra", `failed: .*x509: `)
	wantResult(t, r.out, "read-link", `failed: .*No such file`)
	layers := filepath.Join(h.state, "images", "layers")
	before := treeDigest(t, layers)

	r = h.local(t, file, append(args, "--ca-file", caFile)...)
	if r.code != 0 {
		t.Fatalf("with a CA file: exit %d", r.code)
	}
	wantResult(t, r.out, "go-extra", `ok: hello-through-extra-ca`)
	wantResult(t, r.out, "read-link", `failed: .*No such file`) // nothing mounted where the links point
	wantResult(t, r.out, "certificates", `ok: 1 `)              // the extra CA alone
	order(t, r.out, `hostile · CA bundle: .* \(no system bundle in the image\)`)
	if strings.Contains(r.out, marker) || strings.Contains(r.out, "HOST-ONLY") {
		t.Errorf("the host file %s reached the job's bundle", secret)
	}
	now, err := os.Stat(secret)
	if err != nil {
		t.Fatal(err)
	}
	nowBody, _ := os.ReadFile(secret)
	if !bytes.Equal(nowBody, wasBody) || now.Mode() != was.Mode() || !now.ModTime().Equal(was.ModTime()) {
		t.Errorf("the host file changed: %v %v %q, was %v %v", now.Mode(), now.ModTime(), nowBody, was.Mode(), was.ModTime())
	}
	if after := treeDigest(t, layers); after != before {
		t.Errorf("the image store's layers changed: %s before, %s after", before, after)
	}
}

// TestLocalCAFileRefused: a CA file that is not PEM certificates stops
// `jobrun local` before any job, naming the flag or the config and the
// file; the positive control is TestLocalCAFileTrustedByClients.
func TestLocalCAFileRefused(t *testing.T) {
	file := project(t, `
job "never" {
  image = "IMAGE"
  step "x" { run = "echo MUST-NOT-RUN" }
}
`, map[string]string{"key.pem": "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBvZ0oEX3ZsRk5FT1Y8kbhUJKZc7/yMOqVXnJ6iD8LBd\n-----END PRIVATE KEY-----\n"})
	key := filepath.Join(filepath.Dir(file), "key.pem")
	cfg := filepath.Join(t.TempDir(), "config.hcl")
	if err := os.WriteFile(cfg, []byte(`ca_file = "missing.pem"`), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newTestHost(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--ca-file", key}, `--ca-file: CA file ` + regexp.QuoteMeta(key) + `: block 1 is a "PRIVATE KEY", not a CERTIFICATE`},
		{[]string{"--config", cfg}, `config ca_file: CA file: open ` + regexp.QuoteMeta(filepath.Join(filepath.Dir(cfg), "missing.pem"))},
	} {
		r := h.local(t, file, c.args...)
		if r.code == 0 || strings.Contains(r.out, "MUST-NOT-RUN") {
			t.Errorf("%v: exit %d", c.args, r.code)
		}
		if !regexp.MustCompile(c.want).MatchString(r.err) {
			t.Errorf("%v: stderr %q, want %q", c.args, r.err, c.want)
		}
	}
}

// TestLocalCAFileReachesServices: a job's service containers get the
// bundle and the variables too, as its steps do, and a job running as a
// user other than root can read it.
func TestLocalCAFileReachesServices(t *testing.T) {
	ca := newTestCA(t, "jobrun test proxy CA")
	user := "oci-layout:" + filepath.Join(testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES", "test images built by scripts/testimages.sh"), "busybox-user") + ":latest"
	file := project(t, `
job "as-user" {
  image = "`+user+`"
  step "x" { run = "echo USER $(id -u) $(grep -c BEGIN $SSL_CERT_FILE) $(grep -c BEGIN /dev/.jobrun/extra-ca-certificates.crt)" }
}
job "with-web" {
  image = "IMAGE"
  service "web" {
    image   = "IMAGE"
    command = ["sh", "-c", "echo \"SVC $SSL_CERT_FILE $(grep -c BEGIN $SSL_CERT_FILE)\"; mkdir -p /www && exec httpd -f -p 8080 -h /www"]
    port    = 8080
  }
  step "x" { run = "echo STEP $SSL_CERT_FILE" }
}
`, map[string]string{"ca.pem": string(ca.pem)})
	h := newTestHost(t)
	r := h.local(t, file, "--ca-file", filepath.Join(filepath.Dir(file), "ca.pem"))
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	order(t, r.out, `with-web › service web \| SVC /dev/.jobrun/ca-certificates.crt 1\n`)
	order(t, r.out, `with-web › x \| STEP /dev/.jobrun/ca-certificates.crt\n`)
	order(t, r.out, `as-user › x \| USER 1000 1 1\n`)
}

// TestAgentCAFile: `jobrun agent` gives its jobs the CA certificates of
// the config's ca_file (relative to the config, in the state dir).
func TestAgentCAFile(t *testing.T) {
	image := busybox(t)
	bin := buildJobrun(t)
	ctx := context.Background()
	ca := newTestCA(t, "jobrun test proxy CA")
	p := startPool(t, bin, "10s")
	h := agentHost(t)
	for name, body := range map[string]string{"config.hcl": `ca_file = "proxy-ca.pem"`, "proxy-ca.pem": string(ca.pem)} {
		if err := os.WriteFile(filepath.Join(h.state, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := p.startAgent(t, bin, h, "ca-agent")
	logs := p.logs(map[string]*daemon{"agent": a})
	run, err := p.c.CreateRun(ctx, api.NewRun{Repo: "example.com/ca", Branch: "main", Source: `
job "trusts" {
  image   = "` + image + `"
  agent   = ["e2e"]
  network = "none"
  step "x" { run = "echo CA $SSL_CERT_FILE $(grep -c BEGIN $SSL_CERT_FILE)" }
}
`})
	if err != nil {
		t.Fatal(err)
	}
	r := waitRunDone(t, p.c, run.ID, logs)
	if r.Status != api.Succeeded {
		t.Fatalf("run %d: %s (%s)%s", r.ID, r.Status, r.Reason, logs())
	}
	if l := jobLog(t, p.c, r.Jobs[0].ID); !strings.Contains(l, "CA /dev/.jobrun/ca-certificates.crt 1") {
		t.Errorf("the job's log lacks its CA bundle:\n%s", l)
	}
	a.stop(t)
}
