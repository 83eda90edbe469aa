// Package image keeps a host's OCI images: it pulls each blob once, unpacks
// each layer once (by DiffID, into its own read-only directory in overlayfs
// format, shared by every image that has it), and gives every job its own
// writable root as an overlay snapshot in milliseconds.
//
// Layout under the store's directory:
//
//	blobs/sha256/HEX    verified blobs (manifests, configs, compressed layers)
//	layers/HEX          unpacked layers, named by DiffID, never modified
//	images/HEX.json     one record per image reference (HEX: sha256 of the name)
//	tmp/                downloads and unpacks in progress
//	gc.lock             shared by pulls and snapshots, exclusive for prune
//
// Everything is written to tmp/ and renamed into place, so a crash never
// leaves a half blob or layer that is later trusted.
package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/agent/config"
	"github.com/jobrun/jobrun/internal/lockfile"
)

// Options configure a Store.
type Options struct {
	// Config holds registry mirrors and insecure hosts; nil means none.
	Config *config.Config
	Log    hclog.Logger
	// Progress, if set, receives a line per layer pulled.
	Progress io.Writer
	// SnapshotDir holds the per-job snapshots; default DIR/../snapshots.
	SnapshotDir string
}

// Store is a host's image store. It is safe for concurrent use, also by
// several processes sharing one directory.
type Store struct {
	dir   string
	snaps string
	opts  Options
	log   hclog.Logger

	mu       sync.Mutex
	inflight map[string]*call // downloads and unpacks under way, by key
}

// Image is an image in the store.
type Image struct {
	// Ref is the normalised reference it was pulled or imported as.
	Ref string `json:"ref"`
	// Digest is the manifest's digest.
	Digest string `json:"digest"`
	// Layers from the bottom up.
	Layers []Layer `json:"layers"`
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
	s := &Store{dir: dir, opts: opts, log: opts.Log, inflight: map[string]*call{}}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	s.snaps = opts.SnapshotDir
	if s.snaps == "" {
		s.snaps = filepath.Join(filepath.Dir(dir), "snapshots")
	}
	for _, d := range []string{"blobs/sha256", "layers", "images", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	if err := os.MkdirAll(s.snaps, 0o700); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	return s, nil
}

func (s *Store) blobPath(digest string) string {
	return filepath.Join(s.dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

func (s *Store) layerPath(diffID string) string {
	return filepath.Join(s.dir, "layers", strings.TrimPrefix(diffID, "sha256:"))
}

func (s *Store) recordPath(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return filepath.Join(s.dir, "images", hex.EncodeToString(sum[:])+".json")
}

func (s *Store) gcLock() string { return filepath.Join(s.dir, "gc.lock") }

// Get returns the image stored as ref (normalised), or an error wrapping
// os.ErrNotExist.
func (s *Store) Get(ref string) (*Image, error) {
	b, err := os.ReadFile(s.recordPath(ref))
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	var img Image
	if err := json.Unmarshal(b, &img); err != nil {
		return nil, fmt.Errorf("image %s: bad record: %w", ref, err)
	}
	return &img, nil
}

func (s *Store) put(img *Image) error {
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(s.dir, "tmp"), s.recordPath(img.Ref), b)
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
// removes what no image references and no live snapshot uses.
func (s *Store) Remove(ref string) error {
	r, err := ParseRef(ref)
	if err != nil {
		return err
	}
	if err := os.Remove(s.recordPath(r.String())); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("image %s: not in the store", r)
		}
		return fmt.Errorf("remove image %s: %w", r, err)
	}
	return nil
}

// Size is the bytes an image's blobs take in the store.
func (img *Image) Size() int64 {
	var n int64
	for _, l := range img.Layers {
		n += l.Size
	}
	return n
}

// writeAtomic writes b to path through a temp file in tmpDir and a rename.
func writeAtomic(tmpDir, path string, b []byte) error {
	f, err := os.CreateTemp(tmpDir, "write-")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

// call is one in-process download or unpack that concurrent callers share.
type call struct {
	done chan struct{}
	err  error
}

// once runs fn for key unless a call for key is under way in this process,
// in which case it waits for that call's result.
func (s *Store) once(ctx context.Context, key string, fn func() error) error {
	s.mu.Lock()
	if c, ok := s.inflight[key]; ok {
		s.mu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c := &call{done: make(chan struct{})}
	s.inflight[key] = c
	s.mu.Unlock()
	c.err = fn()
	s.mu.Lock()
	delete(s.inflight, key)
	s.mu.Unlock()
	close(c.done)
	return c.err
}

// locked runs fn holding the cross-process lock for key.
func (s *Store) locked(ctx context.Context, key string, fn func() error) error {
	l, err := lockfile.Acquire(ctx, filepath.Join(s.dir, "tmp", key+".lock"))
	if err != nil {
		return err
	}
	defer l.Release()
	return fn()
}
