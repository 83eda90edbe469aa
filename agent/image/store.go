// Package image keeps a host's OCI images: it pulls each blob once, unpacks
// each layer once (by DiffID, into its own read-only directory in overlayfs
// format, shared by every image that has it), and gives every job its own
// writable root as an overlay snapshot in milliseconds.
//
// Layout under the store's directory:
//
//	blobs/sha256/HEX    verified blobs: OCI manifests, configs, layers
//	layers/HEX          unpacked layers, named by DiffID, never modified
//	flat/HEX            images with too many layers for one overlay mount,
//	                    merged into one directory (HEX: of the DiffID chain)
//	images/HEX.json     one record per image reference (HEX: sha256 of the name)
//	ids/HEX.json        the highest uid or gid a layer's files are owned by
//	                    (HEX: its DiffID), written as it is unpacked
//	locks/              per-blob and per-layer download/unpack locks
//	tmp/                downloads and unpacks in progress
//	gc.lock             shared by pulls and snapshots, exclusive for prune
//
// Everything is written to tmp/ and renamed into place, so a crash never
// leaves a half blob or layer that is later trusted. Images enter the store
// with OCI media types: Docker schema2 manifests are converted on the way in
// (layer bytes and digests unchanged).
package image

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/agent/config"
	"github.com/jobrun/jobrun/internal/atomicfile"
	"github.com/jobrun/jobrun/internal/lockfile"
)

// Policy says when Resolve asks the registry.
type Policy string

const (
	// IfMissing pulls only images not in the store: a warm agent starts
	// jobs with no network at all. The default.
	IfMissing Policy = "if-missing"
	// Always asks the registry what a tag points at (one manifest HEAD) and
	// pulls only when it moved. Digest references never need the network
	// once stored.
	Always Policy = "always"
	// Never uses the store only and fails for an image not in it.
	Never Policy = "never"
)

// Check says whether p is a known policy.
func (p Policy) Check() error {
	switch p {
	case IfMissing, Always, Never:
		return nil
	}
	return fmt.Errorf("unknown pull policy %q (want %s, %s or %s)", string(p), Always, IfMissing, Never)
}

// Options configure a Store.
type Options struct {
	// Config holds registry mirrors and insecure hosts; nil means none.
	Config *config.Config
	// Log receives warnings (a mirror that failed, a cleaned-up snapshot).
	Log hclog.Logger
	// Progress, if set, shows pulls: a bar per layer on a terminal, a line
	// per layer otherwise.
	Progress io.Writer
	// Policy is when Resolve pulls; default IfMissing.
	Policy Policy
	// SnapshotDir holds the per-job snapshots; default DIR/../snapshots.
	SnapshotDir string
	// Jobs is how many layers one pull downloads and unpacks at once;
	// default 3.
	Jobs int
	// ResponseTimeout is how long a registry may take to start answering a
	// request before the source counts as down (the next mirror, or the
	// registry itself, is tried); default 1 minute. The caller's context
	// bounds the whole pull.
	ResponseTimeout time.Duration
	// CACerts are PEM certificates pulls trust on top of the system's
	// (the config's ca_file, which jobs trust too): a registry whose
	// certificate a private CA signed.
	CACerts []byte
	// MappedIDs, when set, is how many ids (0 to MappedIDs-1) the user
	// namespace this process runs in maps (jobrun without root, issue
	// #18; 1 with only the user's own uid): a layer with a file owned by
	// another id is refused when unpacked, and CheckMapped refuses an
	// image holding one, the error saying MappedFix.
	MappedIDs uint32
	// MappedFix is what to do about such a file.
	MappedFix string
}

// Store is a host's image store. It is safe for concurrent use, also by
// several processes sharing one directory.
type Store struct {
	dir   string
	snaps string
	opts  Options
	log   hclog.Logger

	// transport is shared by every pull, so connections are reused.
	transport *http.Transport

	mu       sync.Mutex
	inflight map[string]*call // downloads and unpacks under way, by key

	observer Observer // see SetObserver; nil for none

	// idsSeen caches id records (layerIDs by key) read by CheckIDs: a
	// DiffID names a layer's content, so a record never changes.
	idsSeen sync.Map

	// views are SnapshotFor's kept idmapped views of the layers, one per
	// id range (idmapviews.go).
	viewsMu sync.Mutex
	views   idmapViews
}

// Image is an image in the store.
type Image struct {
	// Ref is the normalised reference it was pulled or imported as.
	Ref string `json:"ref"`
	// Digest is the manifest digest at the source (the registry's, the
	// layout's or the archive's), what ref@sha256:... names.
	Digest string `json:"digest"`
	// Index is the digest of the multi-platform index Digest was picked
	// from (what a tag pointed at), if there was one.
	Index string `json:"index,omitempty"`
	// Manifest is the digest of the OCI manifest in the store; it differs
	// from Digest when a Docker manifest was converted.
	Manifest string `json:"manifest"`
	// ConfigDigest is the digest of the image config blob.
	ConfigDigest string `json:"config_digest"`
	// Layers from the bottom up.
	Layers []Layer `json:"layers"`
	// Flat, when set, is the merged directory (hex) the image's snapshots
	// use instead of its layers, which are too many for one mount.
	Flat string `json:"flat,omitempty"`
	// Config is what the image says about how to run it.
	Config Config `json:"config"`
	// Created is when it entered the store.
	Created time.Time `json:"created"`
}

// Layer is one layer of an image.
type Layer struct {
	Digest    string `json:"digest"` // of the blob as stored (compressed)
	DiffID    string `json:"diff_id"`
	MediaType string `json:"media_type"`
	Size      int64  `json:"size"`
}

// Config is the part of an image's config that a job runs with.
type Config struct {
	Env        []string `json:"env,omitempty"`
	User       string   `json:"user,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
}

// Open opens (creating if needed) the store in dir, an absolute path.
func Open(dir string, opts Options) (*Store, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("image store %q: not an absolute path", dir)
	}
	if opts.Policy == "" {
		opts.Policy = IfMissing
	}
	if err := opts.Policy.Check(); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	if opts.Jobs <= 0 {
		opts.Jobs = 3
	}
	if opts.ResponseTimeout <= 0 {
		opts.ResponseTimeout = time.Minute
	}
	tr := remote.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = opts.ResponseTimeout
	if len(opts.CACerts) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(opts.CACerts) {
			return nil, errors.New("image store: no PEM certificate among the CA certificates")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	s := &Store{dir: dir, opts: opts, log: opts.Log, inflight: map[string]*call{}, transport: tr}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	s.snaps = opts.SnapshotDir
	if s.snaps == "" {
		s.snaps = filepath.Join(filepath.Dir(dir), "snapshots")
	}
	for _, d := range []string{"blobs/sha256", "layers", "flat", "images", "ids", "locks", "tmp", "idmapped"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	if err := os.MkdirAll(s.snaps, 0o700); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	// A job in a user namespace (SnapshotFor) is set up as its range's
	// root, which must get through to its rootfs, never list what is
	// there.
	if err := os.Chmod(s.snaps, 0o711); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	return s, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) blobPath(digest string) string {
	return filepath.Join(s.dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

func (s *Store) layerPath(diffID string) string {
	return filepath.Join(s.dir, "layers", strings.TrimPrefix(diffID, "sha256:"))
}

func (s *Store) flatPath(hex string) string { return filepath.Join(s.dir, "flat", hex) }

func (s *Store) recordPath(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return filepath.Join(s.dir, "images", hex.EncodeToString(sum[:])+".json")
}

func (s *Store) tmpDir() string { return filepath.Join(s.dir, "tmp") }

func (s *Store) gcLock() string { return filepath.Join(s.dir, "gc.lock") }

// lowerDirs are the directories a snapshot of img stacks, bottom first.
func (s *Store) lowerDirs(img *Image) []string {
	if img.Flat != "" {
		return []string{s.flatPath(img.Flat)}
	}
	out := make([]string, len(img.Layers))
	for i, l := range img.Layers {
		out[i] = s.layerPath(l.DiffID)
	}
	return out
}

// Get returns the image stored as ref, which it normalises, or an error
// wrapping os.ErrNotExist.
func (s *Store) Get(ref string) (*Image, error) {
	if !strings.HasPrefix(ref, LayoutPrefix) {
		r, err := ParseRef(ref)
		if err != nil {
			return nil, err
		}
		ref = r.String()
	}
	return s.get(ref)
}

func (s *Store) get(ref string) (*Image, error) {
	b, err := os.ReadFile(s.recordPath(ref))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("image %s: not in the store: %w", ref, err)
		}
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	var img Image
	if err := json.Unmarshal(b, &img); err != nil {
		return nil, fmt.Errorf("image %s: bad record: %w", ref, err)
	}
	return &img, nil
}

// complete reports whether everything a snapshot of img needs is on disk,
// so a record whose layers a crash or prune took is pulled again rather
// than trusted.
func (s *Store) complete(img *Image) bool {
	for _, d := range s.lowerDirs(img) {
		if _, err := os.Stat(d); err != nil {
			return false
		}
	}
	return true
}

func (s *Store) put(img *Image) error {
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.tmpDir(), s.recordPath(img.Ref), b)
}

// List returns the stored images, sorted by reference.
func (s *Store) List() ([]*Image, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "images"))
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []*Image
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(s.dir, "images", e.Name()))
		if err != nil {
			continue // removed meanwhile
		}
		var img Image
		if json.Unmarshal(b, &img) == nil {
			out = append(out, &img)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// Remove forgets the image ref. Its layers and blobs stay until Prune, which
// removes what no image references and no live snapshot uses, so removing
// an image a job runs on is safe.
func (s *Store) Remove(ref string) error {
	if !strings.HasPrefix(ref, LayoutPrefix) {
		r, err := ParseRef(ref)
		if err != nil {
			return err
		}
		ref = r.String()
	}
	if err := os.Remove(s.recordPath(ref)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("image %s: not in the store", ref)
		}
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}

// Size is the bytes of an image's layer blobs.
func (img *Image) Size() int64 {
	var n int64
	for _, l := range img.Layers {
		n += l.Size
	}
	return n
}

// call is one in-process download or unpack that concurrent callers share.
type call struct {
	done chan struct{}
	err  error
}

// once runs fn for key unless a call for key is under way in this process,
// in which case it waits for that call's result. It reports whether fn ran
// in this call. A call that ended because its own caller gave up (its
// context) is not our failure: then fn runs again, for us.
func (s *Store) once(ctx context.Context, key string, fn func() error) (bool, error) {
	s.mu.Lock()
	for {
		c, ok := s.inflight[key]
		if !ok {
			break
		}
		s.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		if c.err == nil || ctx.Err() != nil || !isContextErr(c.err) {
			return false, c.err
		}
		s.mu.Lock()
	}
	c := &call{done: make(chan struct{})}
	s.inflight[key] = c
	s.mu.Unlock()
	c.err = fn()
	s.mu.Lock()
	delete(s.inflight, key)
	s.mu.Unlock()
	close(c.done)
	return true, c.err
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// locked runs fn holding the cross-process lock for key.
func (s *Store) locked(ctx context.Context, key string, fn func() error) error {
	l, err := lockfile.Acquire(ctx, filepath.Join(s.dir, "locks", key+".lock"))
	if err != nil {
		return err
	}
	defer l.Release()
	return fn()
}

func (s *Store) sharedGC(ctx context.Context) (*lockfile.Lock, error) {
	l, err := lockfile.AcquireShared(ctx, s.gcLock())
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	return l, nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
