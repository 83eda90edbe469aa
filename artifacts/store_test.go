package artifacts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/internal/miniotest"
)

// stores runs fn against a Local store and an S3 store on the real MinIO.
func stores(t *testing.T, fn func(t *testing.T, st Store)) {
	t.Run("local", func(t *testing.T) {
		st, err := NewLocal(filepath.Join(t.TempDir(), "artifacts"))
		must(t, err)
		fn(t, st)
	})
	t.Run("s3", func(t *testing.T) {
		cfg := miniotest.Config(t)
		cfg.Prefix = "artifacts"
		st, err := NewS3(context.Background(), cfg, S3Options{})
		must(t, err)
		fn(t, st)
	})
}

func collect(t *testing.T, ws string, patterns ...string) *Collection {
	t.Helper()
	c, err := Collect(context.Background(), ws, patterns, CollectOptions{})
	must(t, err)
	return c
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestStoreRoundTrip(t *testing.T) {
	stores(t, func(t *testing.T, st Store) {
		ctx := context.Background()
		ws := workspace(t)
		ref := Ref{Repo: "github.com/org/app", Run: "42", Job: "build-linux", Attempt: 1}
		m, err := Upload(ctx, st, ref, collect(t, ws, "bin/**", "coverage.out"), UploadOptions{Workers: 2})
		must(t, err)
		if len(m.Files) != 3 || m.Files[0].Path != "bin/app" || m.Files[0].SHA256 != sha("ELF app") || m.Files[0].Mode != 0o755 {
			t.Fatalf("manifest files = %+v", m.Files)
		}
		if len(m.Skipped) == 0 {
			t.Error("manifest does not report the skipped symlinks")
		}
		got, err := st.Manifest(ctx, ref)
		must(t, err)
		if len(got.Files) != 3 || got.Files[2] != m.Files[2] {
			t.Errorf("stored manifest = %+v", got.Files)
		}
		rc, err := st.Open(ctx, ref, "bin/lib/x.so")
		must(t, err)
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != "so" {
			t.Errorf("Open read %q", b)
		}
		if _, err := st.Open(ctx, ref, "bin/shadow"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Open of a skipped symlink: %v, want ErrNotFound", err)
		}

		// A retried attempt never overwrites the first.
		write(t, filepath.Join(ws, "bin/app"), "ELF v2", 0o755)
		if _, err := Upload(ctx, st, ref, collect(t, ws, "bin/app"), UploadOptions{}); !errors.Is(err, ErrAttemptExists) {
			t.Fatalf("second upload of attempt 1: %v, want ErrAttemptExists", err)
		}
		ref2 := ref
		ref2.Attempt = 2
		_, err = Upload(ctx, st, ref2, collect(t, ws, "bin/app"), UploadOptions{})
		must(t, err)
		other := Ref{Repo: "github.com/org/app", Run: "42", Job: "test", Attempt: 1}
		_, err = Upload(ctx, st, other, collect(t, ws, "coverage.out"), UploadOptions{})
		must(t, err)
		refs, err := st.List(ctx, "github.com/org/app", "42")
		must(t, err)
		if len(refs) != 3 || refs[0] != ref || refs[1] != ref2 || refs[2] != other {
			t.Errorf("List = %v", refs)
		}

		// Fetch places attempt 1 into a dependent job's workspace, replacing
		// (not following) a symlink that was there.
		dst := t.TempDir()
		outside := filepath.Join(t.TempDir(), "victim")
		write(t, outside, "untouched", 0o644)
		must(t, os.MkdirAll(filepath.Join(dst, "bin"), 0o755))
		must(t, os.Symlink(outside, filepath.Join(dst, "bin/app")))
		_, err = Fetch(ctx, st, ref, dst)
		must(t, err)
		if b, _ := os.ReadFile(outside); string(b) != "untouched" {
			t.Errorf("Fetch wrote through a symlink: victim reads %q", b)
		}
		fi, err := os.Lstat(filepath.Join(dst, "bin/app"))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o755 {
			t.Fatalf("fetched bin/app: %v, %v", fi, err)
		}
		if b, _ := os.ReadFile(filepath.Join(dst, "bin/app")); string(b) != "ELF app" {
			t.Errorf("fetched attempt 1's bin/app reads %q", b)
		}
		if b, _ := os.ReadFile(filepath.Join(dst, "bin/lib/x.so")); string(b) != "so" {
			t.Errorf("fetched bin/lib/x.so reads %q", b)
		}
		if _, err := Fetch(ctx, st, Ref{Repo: "github.com/org/app", Run: "42", Job: "nope", Attempt: 1}, dst); !errors.Is(err, ErrNotFound) {
			t.Errorf("Fetch of a missing job: %v", err)
		}
	})
}

func TestStoreSweep(t *testing.T) {
	stores(t, func(t *testing.T, st Store) {
		ctx := context.Background()
		ws := workspace(t)
		short := Ref{Repo: "r", Run: "1", Job: "short", Attempt: 1}
		forever := Ref{Repo: "r", Run: "1", Job: "forever", Attempt: 1}
		crashed := Ref{Repo: "r", Run: "1", Job: "crashed", Attempt: 1}
		_, err := Upload(ctx, st, short, collect(t, ws, "bin/**"), UploadOptions{ExpireIn: time.Hour})
		must(t, err)
		_, err = Upload(ctx, st, forever, collect(t, ws, "bin/**"), UploadOptions{})
		must(t, err)
		must(t, st.Begin(ctx, crashed)) // an uploader that died after its claim
		must(t, st.Put(ctx, crashed, "half", strings.NewReader("x"), 1))

		now := time.Now()
		if removed, err := st.Sweep(ctx, now); err != nil || len(removed) != 0 {
			t.Fatalf("Sweep now removed %v, %v", removed, err)
		}
		removed, err := st.Sweep(ctx, now.Add(2*time.Hour))
		if err != nil || len(removed) != 1 || removed[0] != short {
			t.Fatalf("Sweep in 2h removed %v, %v; want %v", removed, err, short)
		}
		if _, err := st.Manifest(ctx, short); !errors.Is(err, ErrNotFound) {
			t.Errorf("expired attempt still has a manifest: %v", err)
		}
		removed, err = st.Sweep(ctx, now.Add(25*time.Hour))
		if err != nil || len(removed) != 1 || removed[0] != crashed {
			t.Fatalf("Sweep in 25h removed %v, %v; want the abandoned %v", removed, err, crashed)
		}
		if _, err := st.Manifest(ctx, forever); err != nil {
			t.Errorf("an attempt without expiry was swept: %v", err)
		}
		// The swept attempt's number is free again; the kept one is not.
		must(t, st.Begin(ctx, crashed))
		if err := st.Begin(ctx, forever); !errors.Is(err, ErrAttemptExists) {
			t.Errorf("Begin of a kept attempt: %v", err)
		}
	})
}

func TestRefValidate(t *testing.T) {
	for _, r := range []Ref{
		{Repo: "", Run: "1", Job: "j", Attempt: 1},
		{Repo: "../x", Run: "1", Job: "j", Attempt: 1},
		{Repo: "/abs", Run: "1", Job: "j", Attempt: 1},
		{Repo: "r", Run: "1/2", Job: "j", Attempt: 1},
		{Repo: "r", Run: "1", Job: "..", Attempt: 1},
		{Repo: "r", Run: "1", Job: "j", Attempt: 0},
		{Repo: "r", Run: "1", Job: "j.manifest.json", Attempt: 1},
	} {
		if r.Validate() == nil {
			t.Errorf("%+v: valid", r)
		}
	}
	if err := (Ref{Repo: "github.com/o/r", Run: "17", Job: "build (linux)", Attempt: 3}).Validate(); err != nil {
		t.Error(err)
	}
}

func TestFetchRefusesBadManifest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := NewLocal(filepath.Join(dir, "store"))
	must(t, err)
	ref := Ref{Repo: "r", Run: "1", Job: "j", Attempt: 1}
	must(t, st.Begin(ctx, ref))
	must(t, st.Commit(ctx, &Manifest{Repo: "r", Run: "1", Job: "j", Attempt: 1,
		Files: []ManifestFile{{Path: "../../escaped", Size: 1, SHA256: sha("x")}}}))
	ws := filepath.Join(dir, "ws")
	must(t, os.Mkdir(ws, 0o755))
	if _, err := Fetch(ctx, st, ref, ws); err == nil || !strings.Contains(err.Error(), "invalid file path") {
		t.Fatalf("Fetch of a manifest with ..: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "escaped")); err == nil {
		t.Fatal("Fetch wrote outside the workspace")
	}
}

func TestS3RetriesThenSucceeds(t *testing.T) {
	cfg := miniotest.Config(t)
	proxy, pcfg := miniotest.NewProxy(t, cfg)
	pcfg.MaxRetries = 4
	st, err := NewS3(context.Background(), pcfg, S3Options{})
	must(t, err)
	ws := workspace(t)
	// A 40 MiB file goes up in three 16 MiB parts; its second part and a
	// small file each fail twice with 500 before MinIO sees them.
	big := bytes.Repeat([]byte("0123456789abcdef"), 40<<20/16)
	must(t, os.WriteFile(filepath.Join(ws, "bin/big"), big, 0o644))
	fails := map[string]int{}
	proxy.FailWhen(func(r *http.Request) bool {
		k := ""
		switch {
		case strings.HasSuffix(r.URL.Path, "/bin/big") && r.URL.Query().Get("partNumber") == "2":
			k = "part2"
		case strings.HasSuffix(r.URL.Path, "/bin/app") && r.Method == http.MethodPut:
			k = "app"
		default:
			return false
		}
		fails[k]++
		return fails[k] <= 2
	})
	ref := Ref{Repo: "r", Run: "1", Job: "j", Attempt: 1}
	m, err := Upload(context.Background(), st, ref, collect(t, ws, "bin/**"), UploadOptions{})
	must(t, err)
	if proxy.Failed() != 4 || proxy.Count("PUT part") < 3 {
		t.Errorf("proxy failed %d requests and saw %d part uploads; want 4 and at least 3", proxy.Failed(), proxy.Count("PUT part"))
	}
	dst := t.TempDir()
	_, err = Fetch(context.Background(), st, ref, dst)
	must(t, err)
	b, _ := os.ReadFile(filepath.Join(dst, "bin/big"))
	if !bytes.Equal(b, big) || len(m.Files) != 3 {
		t.Errorf("fetched %d bytes of bin/big, manifest %d files", len(b), len(m.Files))
	}
}

func TestS3FailsClearlyWithoutManifest(t *testing.T) {
	cfg := miniotest.Config(t)
	proxy, pcfg := miniotest.NewProxy(t, cfg)
	pcfg.MaxRetries = 3
	st, err := NewS3(context.Background(), pcfg, S3Options{})
	must(t, err)
	ws := workspace(t)
	for i := range 20 {
		write(t, filepath.Join(ws, "out", string(rune('a'+i))), "data", 0o644)
	}
	proxy.FailWhen(func(r *http.Request) bool {
		return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/out/k")
	})
	ref := Ref{Repo: "r", Run: "1", Job: "j", Attempt: 1}
	_, err = Upload(context.Background(), st, ref, collect(t, ws, "out/**"), UploadOptions{Workers: 4})
	if err == nil {
		t.Fatal("upload through a failing server succeeded")
	}
	for _, want := range []string{"upload out/k", "tried 3 times", "injected by the test proxy"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if proxy.Failed() != 3 {
		t.Errorf("proxy failed %d requests for out/k, want 3 (the retries)", proxy.Failed())
	}
	if _, err := st.Manifest(context.Background(), ref); !errors.Is(err, ErrNotFound) {
		t.Errorf("manifest after a failed upload: %v, want ErrNotFound", err)
	}
	if objs := miniotest.Objects(t, cfg); len(objs) != 0 {
		t.Errorf("a failed upload left %v", objs)
	}
	// Positive control: once the server recovers, the same attempt uploads.
	proxy.FailWhen(nil)
	_, err = Upload(context.Background(), st, ref, collect(t, ws, "out/**"), UploadOptions{})
	must(t, err)
}

func TestS3Down(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := l.Addr().String()
	l.Close()
	_, err = NewS3(context.Background(), S3Config{Endpoint: "http://" + addr, Bucket: "artifacts", AccessKey: "k", SecretKey: "s", MaxRetries: 2}, S3Options{})
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("NewS3 with the server down: %v; want an error naming it", err)
	}
}
