package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// opener opens a blob's content at its source.
type opener func() (io.ReadCloser, error)

// fetchBlob makes sure the blob digest is in the store, reading it from
// open only if it is not. Concurrent callers in this process share one
// download; across processes a file lock does the same. It reports whether
// it downloaded anything; read, if set, is told of every chunk read.
func (s *Store) fetchBlob(ctx context.Context, digest string, open opener, read func(int)) (bool, error) {
	if err := checkDigest(digest); err != nil {
		return false, err
	}
	if exists(s.blobPath(digest)) {
		return false, nil
	}
	fetched := false
	_, err := s.once(ctx, "blob-"+digest, func() error {
		return s.locked(ctx, "blob-"+strings.TrimPrefix(digest, "sha256:"), func() error {
			if exists(s.blobPath(digest)) {
				return nil // another process fetched it while we waited
			}
			fetched = true
			return s.writeBlob(ctx, digest, open, read)
		})
	})
	return fetched, err
}

func checkDigest(d string) error {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return fmt.Errorf("unsupported digest %q (want sha256:<64 hex digits>)", d)
	}
	return nil
}

// writeBlob streams open's content into the store, verifying the digest
// on the way; only a verified, synced blob is renamed into place.
func (s *Store) writeBlob(ctx context.Context, digest string, open opener, read func(int)) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.CreateTemp(s.tmpDir(), "blob-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	h := sha256.New()
	var r io.Reader = ctxReader{ctx, rc}
	if read != nil {
		r = countReader{r, read}
	}
	_, err = io.Copy(io.MultiWriter(f, h), r)
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
	if err := os.Chmod(tmp, 0o444); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.blobPath(digest)); err != nil {
		return err
	}
	return syncDir(filepath.Dir(s.blobPath(digest)))
}

// readBlob returns a stored blob of at most max bytes (manifests, configs).
func (s *Store) readBlob(digest string, max int64) ([]byte, error) {
	f, err := os.Open(s.blobPath(digest))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(b)) > max {
		err = fmt.Errorf("blob %s is larger than %d bytes", short(digest), max)
	}
	return b, err
}

// ctxReader stops a copy when ctx is done, so a stalled source cannot hold
// a job past its cancellation.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

type countReader struct {
	r    io.Reader
	read func(int)
}

func (c countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read(n)
	return n, err
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
