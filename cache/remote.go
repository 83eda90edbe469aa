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
	"github.com/klauspost/compress/zstd"
	"github.com/minio/minio-go/v7"
)

// Remote is the S3-compatible bucket that agents of a pool share volumes
// through. Archives are stored as PREFIX/ID/STAMP.tar.zst.
type Remote = s3client.Config

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
		if strings.HasSuffix(o.Key, ".tar.zst") {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
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
	key := all[len(all)-1].Key
	start := time.Now()
	obj, err := r.c.GetObject(ctx, r.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return false, fmt.Errorf("get %s: %w", key, err)
	}
	defer obj.Close()
	zr, err := zstd.NewReader(obj)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	defer zr.Close()
	n, err := extract(ctx, zr, dst)
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
	key := fmt.Sprintf("%s/%020d.tar.zst", r.cfg.Key(id), time.Now().UnixNano())
	pr, pw := io.Pipe()
	go func() {
		zw, err := zstd.NewWriter(pw, zstd.WithEncoderLevel(zstd.SpeedFastest))
		if err == nil {
			err = archive(ctx, src, zw)
			err = errors.Join(err, zw.Close())
		}
		pw.CloseWithError(err)
	}()
	start := time.Now()
	info, err := r.c.PutObject(ctx, r.cfg.Bucket, key, pr, -1, minio.PutObjectOptions{
		ContentType:  "application/zstd",
		UserMetadata: map[string]string{digestMeta: digest},
		PartSize:     16 << 20,
		// Parts of the stream go up 4 at a time (64 MiB of buffers),
		// as a multipart upload of a known size would.
		ConcurrentStreamParts: true,
		NumThreads:            4,
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
