package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const refNameAnnotation = "org.opencontainers.image.ref.name"

// importLayout stores the image of an OCI layout directory.
func (s *Store) importLayout(ctx context.Context, l layoutRef) (*Image, error) {
	img, err := layoutImage(l.dir, l.tag)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", l, err)
	}
	if d, err := img.Digest(); err == nil {
		if rec, err := s.Get(l.String()); err == nil && rec.Digest == d.String() && s.complete(rec) {
			return rec, nil
		}
	}
	return s.add(ctx, l.String(), img)
}

// layoutImage finds the image tagged tag in the layout at dir (any tag if
// the layout holds one image and tag is empty), picking linux/GOARCH from
// a multi-platform index.
func layoutImage(dir, tag string) (v1.Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("not an OCI layout: %w", err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var found []v1.Descriptor
	var tags []string
	for _, d := range m.Manifests {
		t := d.Annotations[refNameAnnotation]
		tags = append(tags, t)
		if tag == "" || t == tag {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0:
		return nil, fmt.Errorf("no image tagged %q in %s (tags: %s)", tag, dir, strings.Join(tags, ", "))
	case len(found) > 1:
		return nil, fmt.Errorf("%s holds %d images: name one with oci-layout:PATH:TAG (tags: %s)", dir, len(found), strings.Join(tags, ", "))
	}
	d := found[0]
	if d.MediaType.IsIndex() {
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, err
		}
		return platformImage(child)
	}
	return idx.Image(d.Digest)
}

func platformImage(idx v1.ImageIndex) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("no linux/%s image in the index", runtime.GOARCH)
}

// Import stores the images of an archive: an OCI archive (a tar of an OCI
// layout) or a `docker save` archive. Each image is stored under the name
// it is tagged with; an untagged one under as, which may be empty only if
// every image is tagged.
func (s *Store) Import(ctx context.Context, file, as string) ([]*Image, error) {
	kind, err := archiveKind(file)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", file, err)
	}
	if kind == "docker" {
		return s.importDocker(ctx, file, as)
	}
	dir, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "import-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := untarLayout(ctx, file, dir); err != nil {
		return nil, fmt.Errorf("import %s: %w", file, err)
	}
	tag := ""
	if as != "" {
		r, err := ParseRef(as)
		if err != nil {
			return nil, err
		}
		as = r.String()
	}
	img, err := layoutImage(dir, tag)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", file, err)
	}
	ref := as
	if ref == "" {
		ref, err = layoutName(dir)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", file, err)
		}
	}
	rec, err := s.add(ctx, ref, img)
	if err != nil {
		return nil, err
	}
	return []*Image{rec}, nil
}

// layoutName is the reference an OCI archive's only image is tagged with,
// as containerd and skopeo write it (a full name, or just a tag).
func layoutName(dir string) (string, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return "", err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return "", err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return "", err
	}
	for _, d := range m.Manifests {
		if n := d.Annotations["io.containerd.image.name"]; n != "" {
			return normalise(n)
		}
		if n := d.Annotations[refNameAnnotation]; strings.ContainsAny(n, "/:") {
			return normalise(n)
		}
	}
	return "", errors.New("the archive's image has no name: give one with --as")
}

func normalise(n string) (string, error) {
	r, err := ParseRef(n)
	if err != nil {
		return "", err
	}
	return r.String(), nil
}

func (s *Store) importDocker(ctx context.Context, file, as string) ([]*Image, error) {
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(file) })
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", file, err)
	}
	var out []*Image
	for _, d := range m {
		names := d.RepoTags
		if len(names) == 0 {
			if as == "" {
				return nil, fmt.Errorf("import %s: an image has no tag: give one with --as", file)
			}
			names = []string{as}
		}
		for _, n := range names {
			t, err := name.NewTag(n, name.WithDefaultRegistry("docker.io"))
			if err != nil {
				return nil, fmt.Errorf("import %s: tag %q: %w", file, n, err)
			}
			img, err := tarball.ImageFromPath(file, &t)
			if err != nil {
				return nil, fmt.Errorf("import %s: %w", file, err)
			}
			rec, err := s.add(ctx, t.Name(), img)
			if err != nil {
				return nil, err
			}
			out = append(out, rec)
		}
	}
	return out, nil
}

// archiveKind tells a docker save archive (manifest.json) from an OCI
// archive (oci-layout).
func archiveKind(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", errors.New("neither an OCI archive (no oci-layout) nor a docker save archive (no manifest.json)")
		}
		if err != nil {
			return "", fmt.Errorf("not a readable tar archive: %w", err)
		}
		switch path.Clean(h.Name) {
		case "oci-layout":
			return "oci", nil
		case "manifest.json":
			return "docker", nil
		}
	}
}

// untarLayout extracts an OCI archive into dir. Only regular files and
// directories are written, and no name may leave dir.
func untarLayout(ctx context.Context, file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(ctxReader{ctx, f})
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("corrupt or truncated archive: %w", err)
		}
		n := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if n == "." {
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(n, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := root.MkdirAll(path.Dir(n), 0o755); err != nil {
				return err
			}
			out, err := root.OpenFile(n, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("corrupt or truncated archive: %s: %w", n, err)
			}
		default:
			return fmt.Errorf("unexpected entry %s (type %c) in an OCI archive", n, h.Typeflag)
		}
	}
}
