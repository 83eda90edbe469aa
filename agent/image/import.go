package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	refNameAnnotation    = "org.opencontainers.image.ref.name"
	containerdAnnotation = "io.containerd.image.name"
)

// files opens the files of an OCI layout or an image archive by name.
type files interface {
	open(name string) (io.ReadCloser, error)
}

// dirFiles are the files of a directory.
type dirFiles string

func (d dirFiles) open(name string) (io.ReadCloser, error) {
	return os.Open(filepath.Join(string(d), filepath.FromSlash(name)))
}

// tarFiles are the regular files of an uncompressed tar archive, read in
// place: one scan records where each file's data starts.
type tarFiles struct {
	f       *os.File
	entries map[string]tarEntry
}

type tarEntry struct{ off, size int64 }

func openTar(ctx context.Context, file string) (*tarFiles, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	t := &tarFiles{f: f, entries: map[string]tarEntry{}}
	if err := t.scan(ctx); err != nil {
		f.Close()
		return nil, err
	}
	return t, nil
}

func (t *tarFiles) scan(ctx context.Context) error {
	fi, err := t.f.Stat()
	if err != nil {
		return err
	}
	// archive/tar reads whole blocks and seeks over file data, so after
	// Next the file offset is where the entry's data begins.
	tr := tar.NewReader(t.f)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if len(t.entries) == 0 {
				return errors.New("not an image archive: an empty tar file")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("corrupt or truncated archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		off, err := t.f.Seek(0, io.SeekCurrent)
		if err != nil {
			return err
		}
		if off+h.Size > fi.Size() {
			return fmt.Errorf("corrupt or truncated archive: %s ends past the end of the file", h.Name)
		}
		t.entries[path.Clean(strings.TrimPrefix(h.Name, "./"))] = tarEntry{off, h.Size}
	}
}

func (t *tarFiles) open(name string) (io.ReadCloser, error) {
	e, ok := t.entries[path.Clean(name)]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, os.ErrNotExist)
	}
	return io.NopCloser(io.NewSectionReader(t.f, e.off, e.size)), nil
}

func (t *tarFiles) has(name string) bool { _, ok := t.entries[name]; return ok }

func readAll(fs files, name string) ([]byte, error) {
	rc, err := fs.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxConfig+1))
	if err == nil && len(b) > maxConfig {
		err = fmt.Errorf("%s is larger than %d bytes", name, maxConfig)
	}
	return b, err
}

// importLayout stores the image of an OCI layout directory. The layout is
// read each time; what the store has already is not copied again.
func (s *Store) importLayout(ctx context.Context, l layoutRef) (*Image, error) {
	if _, err := os.Stat(filepath.Join(l.dir, "oci-layout")); err != nil {
		return nil, fmt.Errorf("image %s: not an OCI layout: %w", l, err)
	}
	imgs, err := layoutImages(dirFiles(l.dir))
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", l, err)
	}
	src, err := pick(imgs, l.tag, l.dir)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", l, err)
	}
	if rec, err := s.get(l.String()); err == nil && rec.Digest == src.digest && s.complete(rec) {
		s.touch(rec)
		return rec, nil
	}
	img, err := s.add(ctx, l.String(), src)
	s.fetched("layout", err)
	return img, err
}

// layoutImage is one image listed in a layout's index.json.
type layoutImage struct {
	tag, name string // ref.name annotation; containerd's full name
	src       *source
}

// layoutImages reads a layout's index.json and the manifests it lists,
// picking linux/GOARCH from nested multi-platform indexes.
func layoutImages(fs files) ([]layoutImage, error) {
	b, err := readAll(fs, "index.json")
	if err != nil {
		return nil, fmt.Errorf("not an OCI layout: %w", err)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	var out []layoutImage
	for _, d := range idx.Manifests {
		src, err := layoutSource(fs, d)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", short(d.Digest.String()), err)
		}
		out = append(out, layoutImage{tag: d.Annotations[refNameAnnotation], name: d.Annotations[containerdAnnotation], src: src})
	}
	return out, nil
}

func blobName(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

func layoutSource(fs files, d v1.Descriptor) (*source, error) {
	index := ""
	if d.MediaType.IsIndex() {
		b, err := readAll(fs, blobName(d.Digest))
		if err != nil {
			return nil, err
		}
		idx, err := v1.ParseIndexManifest(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		found := false
		for _, m := range idx.Manifests {
			if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == runtime.GOARCH {
				index, d, found = d.Digest.String(), m, true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("no linux/%s image in the index", runtime.GOARCH)
		}
	}
	raw, err := readAll(fs, blobName(d.Digest))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != d.Digest.String() {
		return nil, fmt.Errorf("manifest has digest %s, want %s: corrupt layout", got, d.Digest)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	if m.MediaType == "" {
		m.MediaType = d.MediaType
	}
	open := func(h v1.Hash) (io.ReadCloser, error) { return fs.open(blobName(h)) }
	return &source{digest: d.Digest.String(), index: index, raw: raw, manifest: m, open: open}, nil
}

// pick finds the image tagged tag (any, if the layout holds just one and
// tag is empty).
func pick(imgs []layoutImage, tag, where string) (*source, error) {
	var found []*source
	var tags []string
	for _, img := range imgs {
		tags = append(tags, img.tag)
		if tag == "" || img.tag == tag || img.name == tag {
			found = append(found, img.src)
		}
	}
	switch {
	case len(found) == 0:
		return nil, fmt.Errorf("no image tagged %q in %s (tags: %s)", tag, where, strings.Join(tags, ", "))
	case len(found) > 1:
		return nil, fmt.Errorf("%s holds %d images: name one with oci-layout:PATH:TAG (tags: %s)", where, len(found), strings.Join(tags, ", "))
	}
	return found[0], nil
}

// Import stores the images of an archive file: an OCI archive (a tar of an
// OCI layout, as `skopeo copy ... oci-archive:` or `docker save` of Docker
// 25 write it) or a `docker save` archive. Each image is stored under the
// name it carries; as, if not empty, names the archive's only image.
func (s *Store) Import(ctx context.Context, file, as string) ([]*Image, error) {
	imgs, err := s.importFile(ctx, file, as)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", file, err)
	}
	return imgs, nil
}

type named struct {
	ref string
	src *source
}

func (s *Store) importFile(ctx context.Context, file, as string) ([]*Image, error) {
	if as != "" {
		r, err := ParseRef(as)
		if err != nil {
			return nil, err
		}
		as = r.String()
	}
	t, err := openTar(ctx, file)
	if err != nil {
		return nil, err
	}
	defer t.f.Close()
	var todo []named
	switch {
	case t.has("manifest.json"):
		todo, err = dockerImages(t, as)
	case t.has("index.json") && t.has("oci-layout"):
		todo, err = ociImages(t, as)
	default:
		err = errors.New("neither an OCI archive (no oci-layout and index.json) nor a docker save archive (no manifest.json)")
	}
	if err != nil {
		return nil, err
	}
	var out []*Image
	for _, n := range todo {
		img, err := s.add(ctx, n.ref, n.src)
		if err != nil {
			return out, err
		}
		out = append(out, img)
	}
	return out, nil
}

func ociImages(t *tarFiles, as string) ([]named, error) {
	imgs, err := layoutImages(t)
	if err != nil {
		return nil, err
	}
	if as != "" {
		if len(imgs) != 1 {
			return nil, fmt.Errorf("--as names one image, but the archive holds %d", len(imgs))
		}
		return []named{{as, imgs[0].src}}, nil
	}
	var out []named
	for _, img := range imgs {
		n := img.name
		if n == "" && strings.ContainsAny(img.tag, "/:") {
			n = img.tag // a full name, as skopeo writes when asked to
		}
		if n == "" {
			return nil, fmt.Errorf("image %s in the archive has no name (tag %q): give one with --as", short(img.src.digest), img.tag)
		}
		r, err := ParseRef(n)
		if err != nil {
			return nil, err
		}
		out = append(out, named{r.String(), img.src})
	}
	return out, nil
}

// dockerManifest is one entry of a docker save archive's manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func dockerImages(t *tarFiles, as string) ([]named, error) {
	b, err := readAll(t, "manifest.json")
	if err != nil {
		return nil, err
	}
	var ms []dockerManifest
	if err := json.Unmarshal(b, &ms); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	if as != "" && len(ms) != 1 {
		return nil, fmt.Errorf("--as names one image, but the archive holds %d", len(ms))
	}
	var out []named
	for _, m := range ms {
		names := m.RepoTags
		if as != "" {
			names = []string{as}
		}
		src, err := dockerSource(t, m)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", strings.Join(names, ", "), err)
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("image %s in the archive has no tag: give one with --as", m.Config)
		}
		for _, n := range names {
			r, err := ParseRef(n)
			if err != nil {
				return nil, err
			}
			out = append(out, named{r.String(), src})
		}
	}
	return out, nil
}

// dockerSource describes a docker save image as an OCI manifest over the
// archive's files. Uncompressed layers (docker's default) are stored as
// they are, named by their DiffID; compressed ones are hashed once.
func dockerSource(t *tarFiles, m dockerManifest) (*source, error) {
	cfg, err := readAll(t, m.Config)
	if err != nil {
		return nil, err
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(cfg))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("manifest.json lists %d layers but the config %d diff ids", len(m.Layers), len(cf.RootFS.DiffIDs))
	}
	paths := map[v1.Hash]string{}
	man := &v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1}
	man.Config = descriptorOf(cfg, types.OCIConfigJSON)
	paths[man.Config.Digest] = m.Config
	for i, p := range m.Layers {
		d, err := dockerLayer(t, p, cf.RootFS.DiffIDs[i])
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", p, err)
		}
		man.Layers = append(man.Layers, d)
		paths[d.Digest] = p
	}
	raw, err := json.Marshal(man)
	if err != nil {
		return nil, err
	}
	open := func(h v1.Hash) (io.ReadCloser, error) {
		p, ok := paths[h]
		if !ok {
			return nil, fmt.Errorf("no blob %s in the archive", h)
		}
		return t.open(p)
	}
	return &source{digest: descriptorOf(raw, "").Digest.String(), raw: raw, manifest: man, open: open}, nil
}

func descriptorOf(b []byte, mt types.MediaType) v1.Descriptor {
	sum := sha256.Sum256(b)
	return v1.Descriptor{MediaType: mt, Size: int64(len(b)), Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}}
}

func dockerLayer(t *tarFiles, p string, diffID v1.Hash) (v1.Descriptor, error) {
	e, ok := t.entries[path.Clean(p)]
	if !ok {
		return v1.Descriptor{}, fmt.Errorf("not in the archive: %w", os.ErrNotExist)
	}
	rc, _ := t.open(p)
	br := bufio.NewReader(rc)
	magic, _ := br.Peek(4)
	if !bytes.HasPrefix(magic, []byte{0x1f, 0x8b}) && !bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		// An uncompressed layer's digest is its DiffID; fetchBlob checks it.
		return v1.Descriptor{MediaType: types.OCIUncompressedLayer, Size: e.size, Digest: diffID}, nil
	}
	mt := types.OCILayer
	if magic[0] == 0x28 {
		mt = types.OCILayerZStd
	}
	h := sha256.New()
	if _, err := io.Copy(h, br); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Size: e.size, Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}}, nil
}
