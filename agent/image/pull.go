package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/jobrun/jobrun/internal/units"
)

// Resolve returns the image ref names, taking it from the store when it is
// there (no network at all: a warm agent starts jobs while the registry is
// down) and pulling it otherwise. An oci-layout: reference is read again
// each time, since the directory may have changed; its blobs and layers are
// stored once all the same. A relative oci-layout: path is taken from base.
func (s *Store) Resolve(ctx context.Context, ref, base string) (*Image, error) {
	if strings.HasPrefix(ref, LayoutPrefix) {
		l, err := parseLayout(ref, base)
		if err != nil {
			return nil, err
		}
		return s.importLayout(ctx, l)
	}
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	if img, err := s.Get(r.String()); err == nil && s.complete(img) {
		return img, nil
	}
	return s.Pull(ctx, ref)
}

// complete reports whether every layer of img is unpacked, so a record
// whose layers a crash or prune took is pulled again rather than trusted.
func (s *Store) complete(img *Image) bool {
	for _, l := range img.Layers {
		if _, err := os.Stat(s.layerPath(l.DiffID)); err != nil {
			return false
		}
	}
	return true
}

// Pull fetches ref from its registry, trying the configured mirrors first,
// and stores it. Blobs already in the store are not downloaded again.
func (s *Store) Pull(ctx context.Context, ref string) (*Image, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, src := range s.sources(r) {
		img, err := s.pullFrom(ctx, r, src)
		if err == nil {
			return img, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("pull %s: %w", r, ctx.Err())
		}
		s.log.Warn("pull failed", "image", r.String(), "from", src.Context().RegistryStr(), "error", err)
		errs = append(errs, fmt.Errorf("from %s: %w", src.Context().RegistryStr(), err))
	}
	return nil, fmt.Errorf("pull %s: %w", r, errors.Join(errs...))
}

// sources lists where to pull r from: each mirror, then the registry.
func (s *Store) sources(r Ref) []name.Reference {
	var out []name.Reference
	host := r.Registry()
	for _, m := range s.opts.Config.Registry(host).Mirrors {
		ref, err := mirrorRef(r, m, s.opts.Config.Registry(m).Insecure)
		if err != nil {
			s.log.Warn("bad mirror", "mirror", m, "error", err)
			continue
		}
		out = append(out, ref)
	}
	var opts []name.Option
	if s.opts.Config.Registry(host).Insecure {
		opts = append(opts, name.Insecure)
	}
	if own, err := name.ParseReference(r.String(), opts...); err == nil {
		out = append(out, own)
	}
	return out
}

func mirrorRef(r Ref, mirror string, insecure bool) (name.Reference, error) {
	s := mirror + "/" + r.Context().RepositoryStr()
	switch v := r.Reference.(type) {
	case name.Digest:
		s += "@" + v.DigestStr()
	case name.Tag:
		s += ":" + v.TagStr()
	}
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	return name.ParseReference(s, opts...)
}

func (s *Store) pullFrom(ctx context.Context, r Ref, src name.Reference) (*Image, error) {
	img, err := remote.Image(src,
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
	)
	if err != nil {
		return nil, err
	}
	return s.add(ctx, r.String(), img)
}

// add stores img as ref: blobs, unpacked layers, then the record, under the
// shared gc lock so that prune never takes a layer it is about to use.
func (s *Store) add(ctx context.Context, ref string, img v1.Image) (*Image, error) {
	gc, err := s.sharedGC(ctx)
	if err != nil {
		return nil, err
	}
	defer gc.Release()
	rec, err := describe(ref, img)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	for i, l := range layers {
		start := time.Now()
		fetched, err := s.fetchBlob(ctx, rec.Layers[i].Digest, l.Compressed)
		if err != nil {
			return nil, fmt.Errorf("image %s: layer %s: %w", ref, short(rec.Layers[i].Digest), err)
		}
		unpacked, err := s.unpack(ctx, rec.Layers[i])
		if err != nil {
			return nil, fmt.Errorf("image %s: layer %s: %w", ref, short(rec.Layers[i].Digest), err)
		}
		s.progress(ref, rec.Layers[i], fetched, unpacked, time.Since(start))
	}
	if err := s.put(rec); err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	return rec, nil
}

func (s *Store) progress(ref string, l Layer, fetched, unpacked bool, d time.Duration) {
	if s.opts.Progress == nil {
		return
	}
	what := "present"
	switch {
	case fetched && unpacked:
		what = "pulled and unpacked"
	case fetched:
		what = "pulled"
	case unpacked:
		what = "unpacked"
	}
	fmt.Fprintf(s.opts.Progress, "%s: layer %s %s %s in %s\n", ref, short(l.Digest), units.FormatSize(l.Size), what, units.FormatDuration(d))
}

// describe reads what the store records of img: digests, DiffIDs, config.
func describe(ref string, img v1.Image) (*Image, error) {
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if cf.OS != "" && cf.OS != "linux" {
		return nil, fmt.Errorf("image is for %s, not linux", cf.OS)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if len(layers) != len(cf.RootFS.DiffIDs) {
		return nil, fmt.Errorf("manifest has %d layers but config lists %d diff ids", len(layers), len(cf.RootFS.DiffIDs))
	}
	rec := &Image{Ref: ref, Digest: digest.String(), Created: time.Now().UTC(), Config: Config{
		Env: cf.Config.Env, User: cf.Config.User, WorkingDir: cf.Config.WorkingDir,
		Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd,
	}}
	for i, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		mt, err := l.MediaType()
		if err != nil {
			return nil, err
		}
		size, err := l.Size()
		if err != nil {
			return nil, err
		}
		rec.Layers = append(rec.Layers, Layer{Digest: d.String(), DiffID: cf.RootFS.DiffIDs[i].String(), MediaType: string(mt), Size: size})
	}
	return rec, nil
}

func short(digest string) string {
	d := strings.TrimPrefix(digest, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}
