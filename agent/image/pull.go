package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Credential is a login for one registry host, for example from a job's
// secrets. It is tried before ~/.docker/config.json.
type Credential struct {
	// Registry is the host as references name it: "docker.io", "ghcr.io",
	// "127.0.0.1:5000".
	Registry string
	Username string
	Password string
	// Token is a registry bearer token, used instead of a password.
	Token string
}

// Resolve returns the image ref names, from the store when the store's
// policy allows it and pulling it otherwise. With the default policy
// (IfMissing) an image in the store costs no network at all, so a warm
// agent starts jobs while the registry is down; a digest reference is
// also found under another name that has the same digest.
//
// An oci-layout:PATH[:tag] reference is read again each time, since the
// directory may have changed, but its blobs and layers are stored once; a
// relative PATH is taken from base (the job file's directory).
func (s *Store) Resolve(ctx context.Context, ref, base string, creds ...Credential) (*Image, error) {
	return s.ResolvePolicy(ctx, ref, base, s.opts.Policy, creds...)
}

// ResolvePolicy is Resolve under policy p instead of the store's (a job's
// own pull policy); an empty p is the store's.
func (s *Store) ResolvePolicy(ctx context.Context, ref, base string, p Policy, creds ...Credential) (*Image, error) {
	if p == "" {
		p = s.opts.Policy
	}
	if err := p.Check(); err != nil {
		return nil, err
	}
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
	img, err := s.local(r)
	if err == nil && p != Always {
		s.touch(img)
		return img, nil
	}
	if p == Never {
		return nil, fmt.Errorf("image %s is not in the store, and the pull policy is %q", r, Never)
	}
	if img != nil && s.current(ctx, r, img, creds) {
		s.touch(img)
		return img, nil
	}
	return s.Pull(ctx, r.String(), creds...)
}

// local finds r in the store: by name, or for a digest reference by the
// digest under any name.
func (s *Store) local(r Ref) (*Image, error) {
	img, err := s.get(r.String())
	if err == nil && s.complete(img) {
		return img, nil
	}
	d, ok := r.Reference.(name.Digest)
	if !ok {
		return nil, fmt.Errorf("image %s: not in the store", r)
	}
	imgs, err := s.List()
	if err != nil {
		return nil, err
	}
	for _, img := range imgs {
		if (img.Digest == d.DigestStr() || img.Index == d.DigestStr()) && s.complete(img) {
			return img, nil
		}
	}
	return nil, fmt.Errorf("image %s: not in the store", r)
}

// current reports whether the stored img is what r names at the registry
// now: a digest reference always is; a tag is checked with one HEAD.
func (s *Store) current(ctx context.Context, r Ref, img *Image, creds []Credential) bool {
	if _, ok := r.Reference.(name.Digest); ok {
		return true
	}
	for _, src := range s.sources(r) {
		d, err := remote.Head(src, s.remoteOptions(ctx, creds)...)
		if err != nil {
			s.log.Warn("cannot check the tag; pulling", "image", r.String(), "from", src.Context().RegistryStr(), "error", err)
			continue
		}
		return d.Digest.String() == img.Digest || d.Digest.String() == img.Index
	}
	return false
}

// Pull fetches ref from its registry, trying the configured mirrors first,
// and stores it. Blobs already in the store are not downloaded again.
func (s *Store) Pull(ctx context.Context, ref string, creds ...Credential) (*Image, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, src := range s.sources(r) {
		img, err := s.pullFrom(ctx, r, src, creds)
		if err == nil {
			s.fetched("registry", nil)
			return img, nil
		}
		host := src.Context().RegistryStr()
		if ctx.Err() != nil {
			err = fmt.Errorf("pull %s from %s: %w (%w)", r, host, ctx.Err(), err)
			s.fetched("registry", err)
			return nil, err
		}
		s.log.Warn("pull failed", "image", r.String(), "from", host, "error", err)
		errs = append(errs, fmt.Errorf("from %s: %w", host, explain(err)))
	}
	err = fmt.Errorf("pull %s: %w", r, errors.Join(errs...))
	s.fetched("registry", err)
	return nil, err
}

// explain adds what a registry's error code means for the user.
func explain(err error) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		return err
	}
	hint := ""
	switch {
	case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden || hasCode(te, transport.UnauthorizedErrorCode, transport.DeniedErrorCode):
		hint = "access denied: check the registry login (the job's image_credentials, the agent config's registry username, or ~/.docker/config.json)"
	case hasCode(te, transport.NameUnknownErrorCode):
		hint = "no such repository"
	case te.StatusCode == http.StatusNotFound || hasCode(te, transport.ManifestUnknownErrorCode):
		hint = "no such tag or digest"
	case te.StatusCode == http.StatusTooManyRequests || hasCode(te, transport.TooManyRequestsErrorCode):
		hint = "rate limited by the registry"
	}
	if hint == "" {
		return err
	}
	return fmt.Errorf("%s: %w", hint, err)
}

func hasCode(te *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range te.Errors {
		for _, c := range codes {
			if d.Code == c {
				return true
			}
		}
	}
	return false
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

func (s *Store) remoteOptions(ctx context.Context, creds []Credential) []remote.Option {
	// A job's own login first, then the agent config's.
	if cfg := s.opts.Config; cfg != nil {
		creds = slices.Clone(creds)
		for host, r := range cfg.Registries {
			if r.Username != "" {
				creds = append(creds, Credential{Registry: host, Username: r.Username, Password: string(r.Password)})
			}
		}
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(keychain(creds)),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
		remote.WithUserAgent("jobrun"),
		remote.WithTransport(s.transport),
	}
}

func (s *Store) pullFrom(ctx context.Context, r Ref, src name.Reference, creds []Credential) (*Image, error) {
	outer := ctx
	ctx, stall := context.WithCancelCause(ctx)
	defer stall(nil)
	img, err := s.pullFromStalling(ctx, r, src, creds, stall)
	if err != nil && outer.Err() == nil && ctx.Err() != nil && !errors.Is(err, errStalled) {
		// Our stall timer, not the caller, cancelled the pull: say so.
		return nil, fmt.Errorf("%w: %w", context.Cause(ctx), err)
	}
	return img, err
}

// errStalled is the cause of a pull cancelled for want of data.
var errStalled = errors.New("the registry stopped sending data")

func (s *Store) pullFromStalling(ctx context.Context, r Ref, src name.Reference, creds []Credential, stall context.CancelCauseFunc) (*Image, error) {
	desc, err := remote.Get(src, s.remoteOptions(ctx, creds)...)
	if err != nil {
		return nil, err
	}
	img, err := desc.Image() // picks linux/GOARCH from an index
	if err != nil {
		return nil, err
	}
	so, err := imageSource(img)
	if err != nil {
		return nil, err
	}
	if desc.MediaType.IsIndex() {
		so.index = desc.Digest.String()
	}
	open, d := so.open, s.opts.ResponseTimeout
	so.open = func(h v1.Hash) (io.ReadCloser, error) {
		rc, err := open(h)
		if err != nil {
			return nil, err
		}
		t := time.AfterFunc(d, func() { stall(fmt.Errorf("%w for %s", errStalled, d)) })
		return &stallReader{rc: rc, t: t, d: d}, nil
	}
	return s.add(ctx, r.String(), so)
}

// stallReader is a download that cancels the pull when no data arrives
// for a while: a connection that stays open but stops sending would
// otherwise hold a job until its own timeout.
type stallReader struct {
	rc io.ReadCloser
	t  *time.Timer
	d  time.Duration
}

func (r *stallReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.t.Reset(r.d)
	return n, err
}

func (r *stallReader) Close() error {
	r.t.Stop()
	return r.rc.Close()
}

// keychain tries the given credentials, then ~/.docker/config.json (and
// its credential helpers).
func keychain(creds []Credential) authn.Keychain {
	if len(creds) == 0 {
		return authn.DefaultKeychain
	}
	return authn.NewMultiKeychain(credKeychain(creds), authn.DefaultKeychain)
}

type credKeychain []Credential

func (k credKeychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	for _, c := range k {
		if dockerHub(c.Registry) == dockerHub(res.RegistryStr()) {
			return authn.FromConfig(authn.AuthConfig{Username: c.Username, Password: c.Password, RegistryToken: c.Token}), nil
		}
	}
	return authn.Anonymous, nil
}

// dockerHub folds Docker Hub's host names into one.
func dockerHub(host string) string {
	switch host {
	case "index.docker.io", "registry-1.docker.io":
		return "docker.io"
	}
	return host
}

// touch marks img as used now, for Prune's least-recently-used order.
func (s *Store) touch(img *Image) {
	now := time.Now()
	os.Chtimes(s.recordPath(img.Ref), now, now)
}
