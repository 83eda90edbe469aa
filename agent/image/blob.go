package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// fetchBlob makes sure the blob digest is in the store, reading it from
// open only if it is not. Concurrent callers in this process share one
// download; across processes a file lock does the same. It reports whether
// it downloaded anything.
func (s *Store) fetchBlob(ctx context.Context, digest string, open func() (io.ReadCloser, error)) (bool, error) {
	if !strings.HasPrefix(digest, "sha256:") || len(digest) != len("sha256:")+64 {
		return false, fmt.Errorf("unsupported digest %q", digest)
	}
	if _, err := os.Stat(s.blobPath(digest)); err == nil {
		return false, nil
	}
	fetched := false
	err := s.once(ctx, "blob-"+digest, func() error {
		return s.locked(ctx, "blob-"+strings.TrimPrefix(digest, "sha256:"), func() error {
			if _, err := os.Stat(s.blobPath(digest)); err == nil {
				return nil // another process fetched it while we waited
			}
			fetched = true
			return s.writeBlob(ctx, digest, open)
		})
	})
	return fetched, err
}

// writeBlob streams open's content into the store, verifying the digest
// on the way; only a verified blob is renamed into place.
func (s *Store) writeBlob(ctx context.Context, digest string, open func() (io.ReadCloser, error)) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "blob-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), ctxReader{ctx, rc})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("content has digest %s, want %s: corrupt or truncated", got, digest)
	}
	return os.Rename(tmp, s.blobPath(digest))
}

// ctxReader stops a copy when ctx is done, so a stalled registry cannot
// hold a job past its cancellation.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, io.EOF
	}
	return n, err
}
