package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jobrun/jobrun/internal/s3client"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/minio/minio-go/v7"
)

// Remote is the S3-compatible bucket that agents of a pool share volumes
// through. Archives are stored as PREFIX/ID/STAMP.tar.s2: a tar stream in
// S2 framing (klauspost/compress/s2), which skips incompressible data at
// gigabytes per second and still shrinks typical caches (module trees,
// build outputs) by a third. Archives written by earlier versions,
// PREFIX/ID/STAMP.tar.zst, are still restored.
type Remote = s3client.Config

// Archive name suffixes: the one written, and the ones read.
const (
	suffixS2   = ".tar.s2"
	suffixZstd = ".tar.zst"
)

// digestMeta is the object metadata holding an archive's tree digest.
const digestMeta = "Jobrun-Digest"

// keepArchives is how many archives of one volume stay in the bucket; more
// than one, so an agent still reading the previous one is not cut off.
const keepArchives = 2

type remote struct {
	cfg Remote
	c   *minio.Client
	log hclog.Logger
}

func newRemote(cfg Remote, log hclog.Logger) (*remote, error) {
	c, err := s3client.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("cache remote: %w", err)
	}
	return &remote{cfg: cfg, c: c, log: log}, nil
}

// archives lists volume id's archives, oldest first (names sort by time).
func (r *remote) archives(ctx context.Context, id string) ([]minio.ObjectInfo, error) {
	var out []minio.ObjectInfo
	for o := range r.c.ListObjects(ctx, r.cfg.Bucket, minio.ListObjectsOptions{Prefix: r.cfg.Key(id) + "/"}) {
		if o.Err != nil {
			return nil, fmt.Errorf("list %s/%s: %w", r.cfg.Bucket, r.cfg.Key(id), o.Err)
		}
		if strings.HasSuffix(o.Key, suffixS2) || strings.HasSuffix(o.Key, suffixZstd) {
			out = append(out, o)
		}
	}
	// STAMP is fixed-width, so the name without its suffix sorts by time
	// whatever the format.
	stamp := func(k string) string { return k[:strings.LastIndex(k, ".tar.")] }
	sort.Slice(out, func(i, j int) bool { return stamp(out[i].Key) < stamp(out[j].Key) })
	return out, nil
}

// restore extracts the newest archive of id into dst, streaming it from
// the bucket through the decompressor into the extractor. It reports false
// when the bucket holds no archive.
func (r *remote) restore(ctx context.Context, id, dst string) (bool, error) {
	all, err := r.archives(ctx, id)
	if err != nil || len(all) == 0 {
		return false, err
	}
	newest := all[len(all)-1]
	key := newest.Key
	start := time.Now()
	// The response body itself, read in order: no goroutine and channel
	// hand-off per read as minio-go's Object adds for its seeking, and
	// only the listed version of the key (If-Match), never a newer one
	// mixed in.
	opts := minio.GetObjectOptions{}
	if newest.ETag != "" {
		if err := opts.SetMatchETag(newest.ETag); err != nil {
			return false, fmt.Errorf("get %s: %w", key, err)
		}
	}
	obj, _, _, err := (&minio.Core{Client: r.c}).GetObject(ctx, r.cfg.Bucket, key, opts)
	if err != nil {
		return false, fmt.Errorf("get %s: %w", key, err)
	}
	defer obj.Close()
	var ar io.Reader
	if strings.HasSuffix(key, suffixZstd) {
		zr, err := zstd.NewReader(obj)
		if err != nil {
			return false, fmt.Errorf("read %s: %w", key, err)
		}
		defer zr.Close()
		ar = zr
	} else {
		ar = s2.NewReader(obj)
	}
	n, err := extract(ctx, ar, dst)
	if err != nil {
		return false, fmt.Errorf("restore %s: %w", key, err)
	}
	r.log.Info("cache restored from remote", "id", id, "object", key, "files", n, "took", time.Since(start))
	return true, nil
}

// upload archives src as a new object unless the newest archive already
// holds content with this digest (another agent saved the same tree). The
// archive streams into a multipart upload of unknown size: nothing is
// staged on disk.
func (r *remote) upload(ctx context.Context, id, src, digest string) error {
	all, err := r.archives(ctx, id)
	if err != nil {
		return err
	}
	if len(all) > 0 {
		st, err := r.c.StatObject(ctx, r.cfg.Bucket, all[len(all)-1].Key, minio.StatObjectOptions{})
		if err == nil && st.UserMetadata[digestMeta] == digest {
			r.log.Debug("cache already in remote", "id", id, "object", st.Key)
			return nil
		}
	}
	key := fmt.Sprintf("%s/%020d%s", r.cfg.Key(id), time.Now().UnixNano(), suffixS2)
	pr, pw := io.Pipe()
	go func() {
		// One encoder goroutine: the upload's own goroutines (part
		// copies, signatures, sockets) need the other cores more.
		sw := s2.NewWriter(pw, s2.WriterConcurrency(1))
		err := archive(ctx, src, blockWriter{sw})
		pw.CloseWithError(errors.Join(err, sw.Close()))
	}()
	start := time.Now()
	info, err := r.c.PutObject(ctx, r.cfg.Bucket, key, pr, -1, minio.PutObjectOptions{
		ContentType:  "application/x-s2",
		UserMetadata: map[string]string{digestMeta: digest},
		PartSize:     16 << 20,
		// Parts of the stream go up 4 at a time (64 MiB of buffers),
		// as a multipart upload of a known size would.
		ConcurrentStreamParts: true,
		NumThreads:            4,
		// DisableContentSha256 stays false: over plain HTTP every chunk
		// of a part is SHA-256 signed, since nothing else keeps the
		// archive from being altered on the way; over HTTPS minio-go
		// sends it unsigned with a CRC trailer, TLS guarding it. mc
		// makes the same choice, so the bench compares like with like.
		// TestUploadSignsPayloadOverPlainHTTP holds this.
	})
	pr.CloseWithError(errors.New("upload ended")) // stop the writer if PutObject gave up early
	if err != nil {
		return fmt.Errorf("put %s/%s: %w", r.cfg.Bucket, key, err)
	}
	r.log.Info("cache saved to remote", "id", id, "object", key, "bytes", info.Size, "took", time.Since(start))
	for _, old := range all[:max(0, len(all)+1-keepArchives)] {
		if err := r.c.RemoveObject(ctx, r.cfg.Bucket, old.Key, minio.RemoveObjectOptions{}); err != nil {
			r.log.Warn("cannot remove old cache archive", "object", old.Key, "error", err)
		}
	}
	return nil
}

// blockWriter hands large writes (file data, read a megabyte at a time)
// to the S2 encoder as whole blocks, which it encodes in place, or for
// incompressible data passes on as they are, instead of copying them into
// its input buffer first. Small writes (tar headers, small files) are
// buffered into blocks as usual. The encoder runs on one goroutine, so a
// block is written out before EncodeBuffer returns and the caller may
// reuse its buffer.
type blockWriter struct{ w *s2.Writer }

func (b blockWriter) Write(p []byte) (int, error) {
	if len(p) < 256<<10 {
		return b.w.Write(p)
	}
	if err := b.w.EncodeBuffer(p); err != nil {
		return 0, err
	}
	return len(p), nil
}
