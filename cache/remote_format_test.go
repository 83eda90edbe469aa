package cache

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/internal/miniotest"
	"github.com/jobrun/jobrun/internal/s3client"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/minio/minio-go/v7"
)

// putArchive compresses the tar stream tb as key's suffix says (.tar.s2 or
// .tar.zst) and stores it in the bucket of cfg.
func putArchive(t *testing.T, cfg s3client.Config, key string, tb []byte) {
	t.Helper()
	var buf bytes.Buffer
	switch {
	case strings.HasSuffix(key, suffixS2):
		w := s2.NewWriter(&buf)
		w.Write(tb)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case strings.HasSuffix(key, suffixZstd):
		w, _ := zstd.NewWriter(&buf)
		w.Write(tb)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("archive %s: unknown suffix", key)
	}
	cl := miniotest.Client(t, cfg)
	if _, err := cl.PutObject(context.Background(), cfg.Bucket, key, &buf, int64(buf.Len()), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// tarOf returns a tar stream of one regular file.
func tarOf(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	tw.Write(data)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return tb.Bytes()
}

// TestRemoteRestoresBothFormats: archives are written as S2 (.tar.s2), and
// the zstd archives (.tar.zst) of agents before them are still restored;
// the newest archive wins whatever its format.
func TestRemoteRestoresBothFormats(t *testing.T) {
	cfg := miniotest.Config(t)
	req := Request{Repo: "r", Name: "n"}
	id := VolumeID(req.Repo, req.Name, req.Key)
	stamp := time.Now().UnixNano()
	for i, suffix := range []string{suffixS2, suffixZstd, suffixS2} {
		content := fmt.Sprintf("archive %d in %s", i, suffix)
		putArchive(t, cfg, fmt.Sprintf("%s/%020d%s", id, stamp+int64(i), suffix), tarOf(t, "f", []byte(content)))
		m, _ := newManager(t, Options{Remote: &cfg})
		v := acquire(t, m, req)
		if !v.Hit() {
			t.Fatalf("%s archive: not restored", suffix)
		}
		if got := readFile(t, filepath.Join(v.Path(), "f")); got != content {
			t.Fatalf("restored %q, want the newest archive's %q", got, content)
		}
		release(t, v, false)
	}
}

// TestRemoteCutArchiveRestoresNothing: an archive cut inside a file's data
// (an upload that died, a truncated object) fails the restore cleanly: the
// volume starts empty, not with a short file taken for whole. The whole
// archive is the positive control.
func TestRemoteCutArchiveRestoresNothing(t *testing.T) {
	cfg := miniotest.Config(t)
	req := Request{Repo: "r", Name: "n"}
	id := VolumeID(req.Repo, req.Name, req.Key)
	data := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16) // several S2 blocks
	tb := tarOf(t, "f", data)

	whole := fmt.Sprintf("%s/%020d%s", id, time.Now().UnixNano(), suffixS2)
	putArchive(t, cfg, whole, tb)
	m, _ := newManager(t, Options{Remote: &cfg})
	v := acquire(t, m, req)
	if !v.Hit() || readFile(t, filepath.Join(v.Path(), "f")) != string(data) {
		t.Fatal("whole archive: not restored")
	}
	release(t, v, false)

	// The same S2 stream, cut in the middle, and cut at the boundary of
	// its blocks that falls after f's data, where the S2 and tar readers
	// both see a clean end.
	var buf bytes.Buffer
	w := s2.NewWriter(&buf, s2.WriterBlockSize(1<<20))
	fileEnd := len(tb) - 1024 // the end-of-archive marker follows f
	w.Write(tb[:fileEnd])
	w.Flush()
	boundary := buf.Len()
	w.Write(tb[fileEnd:])
	w.Close()
	cl := miniotest.Client(t, cfg)
	for _, at := range []int{buf.Len() / 2, boundary} {
		cut := buf.Bytes()[:at]
		key := fmt.Sprintf("%s/%020d%s", id, time.Now().UnixNano(), suffixS2)
		if _, err := cl.PutObject(context.Background(), cfg.Bucket, key, bytes.NewReader(cut), int64(len(cut)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		m, _ = newManager(t, Options{Remote: &cfg})
		v = acquire(t, m, req)
		if v.Hit() || !isEmptyDir(v.Path()) {
			t.Fatalf("an archive cut at %d of %d was restored (Hit=%v)", at, buf.Len(), v.Hit())
		}
		release(t, v, false)
	}
}
