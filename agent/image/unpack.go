package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/umoci/oci/layer"
	"golang.org/x/sys/unix"
)

// unpack makes sure layer l is unpacked into its own directory, named by
// its DiffID, in overlayfs whiteout format. It reports whether it unpacked
// anything.
func (s *Store) unpack(ctx context.Context, l Layer) (bool, error) {
	dst := s.layerPath(l.DiffID)
	if exists(dst) {
		return false, nil
	}
	key := "layer-" + strings.TrimPrefix(l.DiffID, "sha256:")
	done := false
	_, err := s.once(ctx, key, func() error {
		return s.locked(ctx, key, func() error {
			if exists(dst) {
				return nil
			}
			done = true
			return s.unpackInto(ctx, dst, []Layer{l}, layerFormat())
		})
	})
	return done, err
}

// flatten makes sure the layers of img are merged into one directory,
// whiteouts applied, for an image with more layers than one overlay mount
// takes.
func (s *Store) flatten(ctx context.Context, flat string, layers []Layer) (bool, error) {
	dst := s.flatPath(flat)
	if exists(dst) {
		return false, nil
	}
	key := "flat-" + flat
	done := false
	_, err := s.once(ctx, key, func() error {
		return s.locked(ctx, key, func() error {
			if exists(dst) {
				return nil
			}
			done = true
			return s.unpackInto(ctx, dst, layers, layer.DirRootfs{})
		})
	})
	return done, err
}

// unpackInto unpacks layers, in order, into a temp directory, verifies
// each one's DiffID, flushes the file system and renames the result to
// dst, so a crash never leaves a half-unpacked layer under its final name.
func (s *Store) unpackInto(ctx context.Context, dst string, layers []Layer, format layer.OnDiskFormat) error {
	tmp, err := os.MkdirTemp(s.tmpDir(), "unpack-")
	if err != nil {
		return err
	}
	defer removeTree(tmp)
	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	for _, l := range layers {
		ids, err := s.unpackLayer(ctx, root, l, format)
		if err != nil {
			if len(layers) > 1 {
				return fmt.Errorf("layer %s: %w", short(l.Digest), err)
			}
			return err
		}
		// Verified: recorded by DiffID before the layer is in place, so
		// an unpacked layer has its record.
		if err := s.putIDs(l.DiffID, ids); err != nil {
			return err
		}
	}
	if err := syncFS(root); err != nil {
		return err
	}
	if err := os.Rename(root, dst); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dst))
}

// unpackLayer applies layer l to root and returns the ids its files are
// owned by.
func (s *Store) unpackLayer(ctx context.Context, root string, l Layer, format layer.OnDiskFormat) (layerIDs, error) {
	var ids layerIDs
	f, err := os.Open(s.blobPath(l.Digest))
	if err != nil {
		return ids, err
	}
	defer f.Close()
	r, err := decompress(bufio.NewReaderSize(ctxReader{ctx, f}, 1<<20))
	if err != nil {
		return ids, fmt.Errorf("decompress: %w", err)
	}
	defer r.Close()
	h := sha256.New()
	// Decompression and the DiffID hash run a little ahead, on another core.
	tee := newReadAhead(io.TeeReader(r, h))
	defer tee.Close()
	if err := untar(root, tee, format, &ids, s.mappedEntry); err != nil {
		if ctx.Err() != nil {
			return ids, ctx.Err()
		}
		return ids, err
	}
	// The tar reader stops at the end-of-archive marker; the DiffID covers
	// the whole stream, padding included.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return ids, fmt.Errorf("decompress: %w", err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != l.DiffID {
		return ids, fmt.Errorf("uncompressed content has digest %s, but the image config says %s: corrupt layer", got, l.DiffID)
	}
	return ids, nil
}

// untar applies one layer's tar stream to root with umoci, refusing
// entries that try to leave the root instead of quietly clamping them:
// names with "..", and paths that pass through a symlink the layer itself
// made (a tar of a real tree never does; a hostile one does it to write
// through an absolute or escaping link target), and entries check
// refuses. It counts the entries' owners in ids.
func untar(root string, r io.Reader, format layer.OnDiskFormat, ids *layerIDs, check func(*tar.Header) error) error {
	te := layer.NewTarExtractor(&layer.UnpackOptions{OnDiskFormat: format})
	tr := tar.NewReader(r)
	links := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("corrupt or truncated layer: %w", err)
		}
		if err := checkEntry(hdr, links); err != nil {
			return err
		}
		if err := check(hdr); err != nil {
			return err
		}
		if err := te.UnpackEntry(root, hdr, tr); err != nil {
			return fmt.Errorf("unpack %s: %w", hdr.Name, err)
		}
		ids.addHeader(hdr)
	}
}

func checkEntry(hdr *tar.Header, links map[string]bool) error {
	name, err := entryPath(hdr.Name)
	if err != nil {
		return err
	}
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		if links[p] {
			return fmt.Errorf("layer entry %q writes through the symlink %q: refusing a path outside the image root", hdr.Name, p)
		}
	}
	switch hdr.Typeflag {
	case tar.TypeSymlink:
		links[name] = true
	case tar.TypeLink:
		if _, err := entryPath(hdr.Linkname); err != nil {
			return fmt.Errorf("hard link %q: %w", hdr.Name, err)
		}
	default:
		delete(links, name) // replaced by a file or directory
	}
	return nil
}

// entryPath is a tar entry name relative to the root; names that climb out
// of it are refused.
func entryPath(name string) (string, error) {
	n := strings.TrimLeft(name, "/")
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("layer entry %q climbs out of the image root with \"..\": refused", name)
		}
	}
	return path.Clean("./" + n), nil
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

// syncFS flushes the file system holding dir: one call for a whole
// unpacked tree instead of an fsync per file.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// removeTree removes a tree that may hold read-only directories (an
// unpacked layer keeps the image's modes).
func removeTree(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil || !errors.Is(err, os.ErrPermission) {
		return err
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
