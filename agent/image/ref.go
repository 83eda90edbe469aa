package image

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// LayoutPrefix marks a reference to a local OCI image layout directory:
// oci-layout:PATH[:tag].
const LayoutPrefix = "oci-layout:"

// Ref is a registry image reference, normalised the way Docker does:
// "busybox" is docker.io/library/busybox:latest.
type Ref struct {
	name.Reference
}

// ParseRef parses a registry reference such as "alpine", "golang:1.26" or
// "ghcr.io/o/r@sha256:...".
func ParseRef(s string) (Ref, error) {
	if strings.HasPrefix(s, LayoutPrefix) {
		return Ref{}, fmt.Errorf("image %q: an oci-layout reference names a directory, not a registry image", s)
	}
	r, err := name.ParseReference(s, name.WithDefaultRegistry("docker.io"))
	if err != nil {
		return Ref{}, fmt.Errorf("image %q: %w", s, err)
	}
	return Ref{r}, nil
}

// String is the normalised form, docker.io/library/busybox:latest.
func (r Ref) String() string {
	n := r.Name()
	if rest, ok := strings.CutPrefix(n, name.DefaultRegistry+"/"); ok {
		return "docker.io/" + rest
	}
	return n
}

// Registry is the registry host, with "docker.io" for Docker Hub.
func (r Ref) Registry() string { return dockerHub(r.Context().RegistryStr()) }

// layoutRef is a parsed oci-layout:PATH[:tag] reference.
type layoutRef struct {
	dir string
	tag string
}

// SplitLayout splits an oci-layout:PATH[:tag] reference into its PATH, as
// written, and its tag; ok is false for other references.
func SplitLayout(ref string) (path, tag string, ok bool) {
	rest, ok := strings.CutPrefix(ref, LayoutPrefix)
	if !ok {
		return "", "", false
	}
	path = rest
	if i := strings.LastIndex(rest, ":"); i > 0 && !strings.Contains(rest[i+1:], "/") {
		path, tag = rest[:i], rest[i+1:]
	}
	return path, tag, true
}

// parseLayout splits oci-layout:PATH[:tag]; a relative PATH is taken from
// base (the job file's directory).
func parseLayout(s, base string) (layoutRef, error) {
	dir, tag, ok := SplitLayout(s)
	if !ok || dir == "" {
		return layoutRef{}, fmt.Errorf("image %q: want oci-layout:PATH[:tag]", s)
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(base, dir)
	}
	return layoutRef{dir: filepath.Clean(dir), tag: tag}, nil
}

// String names the image in the store: oci-layout:/abs/path:tag.
func (l layoutRef) String() string {
	if l.tag == "" {
		return LayoutPrefix + l.dir
	}
	return LayoutPrefix + l.dir + ":" + l.tag
}
