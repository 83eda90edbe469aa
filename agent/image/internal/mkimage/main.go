// Command mkimage writes an OCI image layout from directories, one gzip
// layer per directory, in one pass per layer (tar, hash, compress, hash).
// Layers are deterministic: entries in lexical order, fixed times, numeric
// owners only, hard links kept. scripts/testimages.sh uses it to build the
// test images from Debian packages.
//
// usage: mkimage -out DIR -tag TAG [-env K=V]... [-user U] [-workdir D]
// [-cmd ARG]... [-entrypoint ARG]... LAYER...
//
// A LAYER is SRC (the directory's content at the image root) or SRC=PREFIX
// (its content under /PREFIX). Device nodes, sockets and the contents of
// dev/, proc/ and sys/ are left out.
package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is every entry's time, so equal trees give equal layers.
var epoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	var (
		out, tag, user, workdir string
		env, cmd, entrypoint    list
	)
	flag.StringVar(&out, "out", "", "OCI layout directory to write (must not exist)")
	flag.StringVar(&tag, "tag", "latest", "tag (org.opencontainers.image.ref.name)")
	flag.StringVar(&user, "user", "", "config User")
	flag.StringVar(&workdir, "workdir", "", "config WorkingDir")
	flag.Var(&env, "env", "config Env entry K=V (repeatable)")
	flag.Var(&cmd, "cmd", "config Cmd argument (repeatable)")
	flag.Var(&entrypoint, "entrypoint", "config Entrypoint argument (repeatable)")
	flag.Parse()
	if out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: mkimage -out DIR -tag TAG [options] SRC[=PREFIX]...")
		os.Exit(2)
	}
	cfg := v1.Config{Env: env, User: user, WorkingDir: workdir, Cmd: cmd, Entrypoint: entrypoint}
	if err := build(out, tag, cfg, flag.Args()); err != nil {
		os.RemoveAll(out)
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func build(out, tag string, cfg v1.Config, layers []string) error {
	if err := os.MkdirAll(filepath.Join(out, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	cf := v1.ConfigFile{
		Architecture: runtime.GOARCH, OS: "linux", Created: v1.Time{Time: epoch},
		Config: cfg, RootFS: v1.RootFS{Type: "layers"},
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1}
	for _, spec := range layers {
		src, prefix, _ := strings.Cut(spec, "=")
		desc, diffID, err := writeLayer(out, src, strings.Trim(prefix, "/"))
		if err != nil {
			return fmt.Errorf("layer %s: %w", spec, err)
		}
		m.Layers = append(m.Layers, desc)
		cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, diffID)
		cf.History = append(cf.History, v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "mkimage " + spec})
	}
	var err error
	if m.Config, err = writeJSON(out, cf, types.OCIConfigJSON); err != nil {
		return err
	}
	md, err := writeJSON(out, m, types.OCIManifestSchema1)
	if err != nil {
		return err
	}
	md.Annotations = map[string]string{"org.opencontainers.image.ref.name": tag}
	md.Platform = &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{md}}
	b, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "index.json"), b, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

func writeJSON(out string, v any, mt types.MediaType) (v1.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return v1.Descriptor{}, err
	}
	sum := sha256.Sum256(b)
	d := v1.Descriptor{MediaType: mt, Size: int64(len(b)), Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}}
	return d, os.WriteFile(filepath.Join(out, "blobs", "sha256", d.Digest.Hex), b, 0o644)
}

// writeLayer streams the tar of src through a DiffID hash, gzip and a
// digest hash into a temp blob, then names it by its digest.
func writeLayer(out, src, prefix string) (v1.Descriptor, v1.Hash, error) {
	f, err := os.CreateTemp(filepath.Join(out, "blobs"), "layer-")
	if err != nil {
		return v1.Descriptor{}, v1.Hash{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	digest, diffID := sha256.New(), sha256.New()
	cw := &counter{w: io.MultiWriter(f, digest)}
	zw, err := gzip.NewWriterLevel(cw, gzip.BestSpeed)
	if err != nil {
		return v1.Descriptor{}, v1.Hash{}, err
	}
	if err := writeTar(io.MultiWriter(zw, diffID), src, prefix); err != nil {
		return v1.Descriptor{}, v1.Hash{}, err
	}
	if err := zw.Close(); err != nil {
		return v1.Descriptor{}, v1.Hash{}, err
	}
	if err := f.Close(); err != nil {
		return v1.Descriptor{}, v1.Hash{}, err
	}
	d := v1.Descriptor{MediaType: types.OCILayer, Size: cw.n, Digest: sum(digest)}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return v1.Descriptor{}, v1.Hash{}, err
	}
	if err := os.Rename(f.Name(), filepath.Join(out, "blobs", "sha256", d.Digest.Hex)); err != nil {
		return v1.Descriptor{}, v1.Hash{}, err
	}
	return d, sum(diffID), nil
}

func sum(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func writeTar(w io.Writer, src, prefix string) error {
	tw := tar.NewWriter(w)
	// The prefix's parents, so the layer unpacks on an empty root too.
	if prefix != "" {
		parts := strings.Split(prefix, "/")
		for i := range parts[:len(parts)-1] {
			h := &tar.Header{Typeflag: tar.TypeDir, Name: strings.Join(parts[:i+1], "/") + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
		}
	}
	links := map[[2]uint64]string{}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := path.Join(prefix, filepath.ToSlash(rel))
		if rel == "." {
			if prefix == "" {
				return nil
			}
			name = prefix
		}
		if parent := path.Dir(filepath.ToSlash(rel)); prefix == "" && (parent == "dev" || parent == "proc" || parent == "sys") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		return writeEntry(tw, p, name, links)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func writeEntry(tw *tar.Writer, p, name string, links map[[2]uint64]string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if fi.Mode()&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeSocket|fs.ModeNamedPipe) != 0 {
		return nil
	}
	target := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		if target, err = os.Readlink(p); err != nil {
			return err
		}
	}
	h, err := tar.FileInfoHeader(fi, target)
	if err != nil {
		return err
	}
	h.Name, h.Uname, h.Gname, h.Format = name, "", "", tar.FormatPAX
	h.ModTime, h.AccessTime, h.ChangeTime = epoch, time.Time{}, time.Time{}
	if fi.IsDir() {
		h.Name += "/"
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().IsRegular() && st.Nlink > 1 {
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := links[key]; ok {
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			return tw.WriteHeader(h)
		}
		links[key] = name
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(tw, f)
	if err == nil && n != h.Size {
		err = errors.New("file changed while read")
	}
	return err
}
