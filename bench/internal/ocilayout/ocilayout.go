// Package ocilayout writes small OCI image layouts for the benches that
// need an image in jobrun's store (bench/sandbox, bench/idmap): a layout
// directory the store imports with an oci-layout: reference, as it does
// any image, so that a bench's snapshots are the ones a job gets.
package ocilayout

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Prefix is how jobrun's store names an image in a layout directory
// (image.LayoutPrefix); Write returns references that start with it.
const Prefix = "oci-layout:"

// Write makes an OCI layout at dir holding one linux/amd64 image tagged
// tag whose layers (bottom first) are the uncompressed tars given, and
// returns its reference for image.Store.Resolve.
func Write(dir, tag string, layers [][]byte) (string, error) {
	img := empty.Image
	for i, b := range layers {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			return "", fmt.Errorf("layout %s: layer %d: %w", dir, i, err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return "", fmt.Errorf("layout %s: layer %d: %w", dir, i, err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", fmt.Errorf("layout %s: %w", dir, err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = v1.Config{Env: []string{"PATH=/bin"}, Cmd: []string{"sh"}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", fmt.Errorf("layout %s: %w", dir, err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return "", fmt.Errorf("layout %s: %w", dir, err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		return "", fmt.Errorf("layout %s: %w", dir, err)
	}
	return Prefix + dir + ":" + tag, nil
}

// DirLayer tars the tree at dir (directories, regular files, symlinks)
// into a layer, every entry owned by root.
func DirLayer(dir string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h := &tar.Header{Name: rel, Mode: int64(fi.Mode().Perm()), ModTime: time.Unix(1e9, 0)}
		switch {
		case d.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, rel+"/"
		case d.Type()&fs.ModeSymlink != 0:
			h.Typeflag = tar.TypeSymlink
			if h.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		case d.Type().IsRegular():
			h.Typeflag, h.Size = tar.TypeReg, fi.Size()
		default:
			return fmt.Errorf("layer of %s: %s is neither a file, a directory nor a symlink", dir, p)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("layer of %s: %w", dir, err)
	}
	return buf.Bytes(), nil
}

// SmallLayer is the i-th of a synthetic image's small layers: a few
// directories every layer shares (etc, usr/bin), one of its own and a
// file, as bench/idmap's layer dirs have.
func SmallLayer(i int) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	t := time.Unix(1e9, 0)
	for _, d := range []string{"etc/", "usr/", "usr/bin/", "usr/lib/", fmt.Sprintf("usr/lib/l%d/", i)} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: t}); err != nil {
			return nil, err
		}
	}
	body := []byte("x\n")
	if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("etc/f%d", i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: t}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(body); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
