package cache

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/internal/miniotest"
)

func TestRemoteRestoreAndUploadOnlyWhenChanged(t *testing.T) {
	cfg := miniotest.Config(t)
	cfg.Prefix = "caches"
	proxy, pcfg := miniotest.NewProxy(t, cfg)
	req := Request{Repo: "github.com/a/app", Name: "gomod", Key: "go.sum:abc", Upload: true}
	id := VolumeID(req.Repo, req.Name, req.Key)

	m1, _ := newManager(t, Options{Remote: &pcfg})
	v := acquire(t, m1, req)
	if v.Hit() {
		t.Fatal("empty bucket: Hit = true")
	}
	writeFile(t, filepath.Join(v.Path(), "mod/cache/download/x.zip"), strings.Repeat("z", 100_000))
	writeFile(t, filepath.Join(v.Path(), "bin/tool"), "#!/bin/sh\n")
	os.Chmod(filepath.Join(v.Path(), "bin/tool"), 0o755)
	os.Symlink("../mod/cache", filepath.Join(v.Path(), "bin/link"))
	release(t, v, true)
	objs := miniotest.Objects(t, cfg)
	if len(objs) != 1 || !strings.HasPrefix(objs[0], "caches/"+id+"/") || !strings.HasSuffix(objs[0], suffixS2) {
		t.Fatalf("after first upload, bucket holds %v", objs)
	}

	writes := proxy.Writes()
	if writes == 0 {
		t.Fatal("the proxy saw no upload; the PUT count below proves nothing")
	}
	// Unchanged: no upload.
	release(t, acquire(t, m1, req), true)
	// Changed but the job failed, or not trusted to upload: no upload.
	v = acquire(t, m1, req)
	writeFile(t, filepath.Join(v.Path(), "failed"), "x")
	release(t, v, false)
	noUp := req
	noUp.Upload = false
	v = acquire(t, m1, noUp)
	writeFile(t, filepath.Join(v.Path(), "untrusted-branch"), "x")
	release(t, v, true)
	if got := proxy.Writes(); got != writes {
		t.Fatalf("%d object writes without a changed, successful, trusted volume", got-writes)
	}

	// Another agent misses locally and restores from the bucket.
	m2, _ := newManager(t, Options{Remote: &pcfg})
	w := acquire(t, m2, req)
	if !w.Hit() {
		t.Fatal("restored volume: Hit = false")
	}
	if got := readFile(t, filepath.Join(w.Path(), "mod/cache/download/x.zip")); len(got) != 100_000 {
		t.Errorf("restored file has %d bytes", len(got))
	}
	if fi, err := os.Stat(filepath.Join(w.Path(), "bin/tool")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("restored bin/tool: %v, %v; want mode 0755", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(w.Path(), "bin/link")); err != nil || l != "../mod/cache" {
		t.Errorf("restored symlink: %q, %v", l, err)
	}
	if _, err := os.Stat(filepath.Join(w.Path(), "failed")); err == nil {
		t.Error("content of a failed job reached the bucket")
	}
	release(t, w, true) // restored and unchanged: no upload
	if got := proxy.Writes(); got != writes {
		t.Fatalf("releasing an unchanged restored volume wrote %d times", got-writes)
	}
	// Positive control: a change is uploaded, as a new archive.
	w = acquire(t, m2, req)
	writeFile(t, filepath.Join(w.Path(), "mod/new"), "new")
	release(t, w, true)
	if proxy.Writes() == writes {
		t.Fatal("changed volume was not uploaded")
	}
	if objs := miniotest.Objects(t, cfg); len(objs) != 2 {
		t.Fatalf("bucket holds %v, want two archives", objs)
	}
	// A third agent gets the newest archive.
	m3, _ := newManager(t, Options{Remote: &pcfg})
	x := acquire(t, m3, req)
	if readFile(t, filepath.Join(x.Path(), "mod/new")) != "new" {
		t.Error("restore did not pick the newest archive")
	}
	release(t, x, true)
	// Other scopes never restore this volume.
	y := acquire(t, m3, Request{Repo: "github.com/b/app", Name: "gomod", Key: "go.sum:abc", Upload: true})
	if y.Hit() || !isEmptyDir(y.Path()) {
		t.Error("another repository restored this repository's cache")
	}
	release(t, y, false)
}

func TestRemoteRejectsTarSlip(t *testing.T) {
	cfg := miniotest.Config(t)
	outside := t.TempDir()
	req := Request{Repo: "r", Name: "n"}
	id := VolumeID(req.Repo, req.Name, req.Key)
	cases := []struct {
		name    string
		entries []tar.Header
	}{
		{"dotdot", []tar.Header{{Name: "ok", Typeflag: tar.TypeReg}, {Name: "../../../" + filepath.Base(outside) + "/escaped", Typeflag: tar.TypeReg}}},
		{"absolute", []tar.Header{{Name: outside + "/escaped", Typeflag: tar.TypeReg}}},
		{"through symlink", []tar.Header{
			{Name: "link", Typeflag: tar.TypeSymlink, Linkname: outside},
			{Name: "link/escaped", Typeflag: tar.TypeReg},
		}},
	}
	for i, tc := range cases {
		for _, suffix := range []string{suffixS2, suffixZstd} {
			t.Run(tc.name+suffix, func(t *testing.T) {
				var tb bytes.Buffer
				tw := tar.NewWriter(&tb)
				for _, h := range tc.entries {
					h.Mode = 0o644
					if h.Typeflag == tar.TypeReg {
						h.Size = 4
					}
					if err := tw.WriteHeader(&h); err != nil {
						t.Fatal(err)
					}
					if h.Typeflag == tar.TypeReg {
						tw.Write([]byte("evil"))
					}
				}
				tw.Close()
				key := fmt.Sprintf("%s/%020d%s", id, time.Now().UnixNano()+int64(i), suffix)
				putArchive(t, cfg, key, tb.Bytes())
				m, _ := newManager(t, Options{Remote: &cfg})
				v := acquire(t, m, req)
				if v.Hit() || !isEmptyDir(v.Path()) {
					t.Errorf("a malicious archive was restored (Hit=%v)", v.Hit())
				}
				release(t, v, false)
				if ents, _ := os.ReadDir(outside); len(ents) != 0 {
					t.Fatalf("extraction wrote outside the volume: %v", ents)
				}
				if _, err := os.Stat(filepath.Join(m.dir, "vols", "escaped")); err == nil {
					t.Fatal("extraction wrote outside the volume data")
				}
			})
		}
	}
}

func TestRemoteDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens here now
	cfg := Remote{Endpoint: "http://" + addr, Bucket: "cache", AccessKey: "k", SecretKey: "s", MaxRetries: 1}
	m, _ := newManager(t, Options{Remote: &cfg})
	// A remote that is down makes a cold cache, not a failed job...
	v := acquire(t, m, Request{Repo: "r", Name: "n", Upload: true})
	writeFile(t, filepath.Join(v.Path(), "f"), "x")
	// ...and a failed save says where it failed, but still releases.
	err = v.Release(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), "save to remote") || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Release with the remote down: %v; want an error naming the remote", err)
	}
	if list, _ := m.List(); len(list) != 1 || list[0].InUse || list[0].Size == 0 {
		t.Fatalf("after a failed save: %+v, want one idle, measured volume", list)
	}
}

func TestRemoteUploadFailureIsRetriedLater(t *testing.T) {
	cfg := miniotest.Config(t)
	proxy, pcfg := miniotest.NewProxy(t, cfg)
	pcfg.MaxRetries = 2
	m, _ := newManager(t, Options{Remote: &pcfg})
	req := Request{Repo: "r", Name: "n", Upload: true}
	proxy.FailWhen(func(r *http.Request) bool { return r.Method == http.MethodPut || r.Method == http.MethodPost })
	v := acquire(t, m, req)
	writeFile(t, filepath.Join(v.Path(), "f"), "data")
	err := v.Release(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), "injected by the test proxy") {
		t.Fatalf("Release through a failing remote: %v", err)
	}
	if proxy.Failed() < 2 {
		t.Errorf("proxy failed %d requests; want the retries to reach it", proxy.Failed())
	}
	if objs := miniotest.Objects(t, cfg); len(objs) != 0 {
		t.Fatalf("a failed upload left %v", objs)
	}
	// The failed upload is not remembered as done: the next successful
	// release of the unchanged volume uploads it.
	proxy.FailWhen(nil)
	release(t, acquire(t, m, req), true)
	if objs := miniotest.Objects(t, cfg); len(objs) != 1 {
		t.Fatalf("after the remote recovered, bucket holds %v; want one archive", objs)
	}
}
