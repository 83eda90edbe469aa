package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/klauspost/compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/umoci/oci/layer"
)

// unpack makes sure layer l is unpacked into its own directory, named by
// its DiffID, in overlayfs whiteout format. It reports whether it unpacked
// anything. The DiffID of the uncompressed stream is verified before the
// directory is renamed into place.
func (s *Store) unpack(ctx context.Context, l Layer) (bool, error) {
	dst := s.layerPath(l.DiffID)
	if _, err := os.Stat(dst); err == nil {
		return false, nil
	}
	done := false
	err := s.once(ctx, "layer-"+l.DiffID, func() error {
		return s.locked(ctx, "layer-"+strings.TrimPrefix(l.DiffID, "sha256:"), func() error {
			if _, err := os.Stat(dst); err == nil {
				return nil
			}
			done = true
			return s.unpackBlob(ctx, l, dst)
		})
	})
	return done, err
}

func (s *Store) unpackBlob(ctx context.Context, l Layer, dst string) error {
	f, err := os.Open(s.blobPath(l.Digest))
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := decompress(bufio.NewReaderSize(ctxReader{ctx, f}, 1<<20))
	if err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	defer r.Close()
	tmp, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "unpack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	h := sha256.New()
	tee := io.TeeReader(r, h)
	opts := &layer.UnpackOptions{OnDiskFormat: layer.OverlayfsRootfs{}}
	if err := layer.UnpackLayer(root, tee, opts); err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	// The tar reader stops at the end-of-archive marker; the DiffID covers
	// the whole stream, padding included.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != l.DiffID {
		return fmt.Errorf("uncompressed content has digest %s, but the image config says %s", got, l.DiffID)
	}
	if err := syncDir(root); err != nil {
		return err
	}
	return os.Rename(root, dst)
}

// decompress sniffs the compression of a layer blob: gzip, zstd, or none.
func decompress(br *bufio.Reader) (io.ReadCloser, error) {
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	default:
		return io.NopCloser(br), nil
	}
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
