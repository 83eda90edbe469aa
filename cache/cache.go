// Package cache keeps the named dependency caches that jobs mount: a host
// directory per repository, cache name and key, shared by concurrent jobs,
// locked to one job at a time, or mounted privately as a copy-on-write
// overlay that is discarded afterwards (always, for untrusted runs).
//
// Layout under the cache directory (STATE_DIR/caches, 0700 like locks,
// vols and private: no one but root reaches a volume on the host):
//
//	locks/ID.lock          guard: held while a volume is created, restored,
//	                       registered, released or evicted; unlinked
//	                       while held when its volume is evicted, or by
//	                       Cleanup once its volume is gone
//	vols/ID/meta.json      size, digest, last use (written atomically)
//	vols/ID/data/          the cache content, mounted into jobs
//	vols/ID/users/N.lock   one lock per live user: eviction skips a volume
//	                       whose user locks are held, across processes
//	vols/ID/exclusive.lock held by the one user of a "locked" volume
//	private/N.lock         held by the owner of a private overlay
//	private/N/{upper,work,merged}
//	private/N/lower/       for a job in a user namespace: the idmapped
//	                       view of the data, mounted only while the
//	                       overlay is made
//
// ID is a readable prefix of the repository and cache name plus a hash of
// repository, name and key, so no repository can name another's volume.
//
// With a Remote, a volume missing locally is restored from the newest
// archive (a tar stream, S2-compressed) of the same ID in a bucket, and a successful trusted job
// uploads the volume again when its content changed.
package cache

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/hashicorp/go-hclog"
	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/lockfile"
)

// Sharing says how concurrent jobs use one volume.
type Sharing string

// Sharing modes.
const (
	// Shared lets concurrent jobs mount the same directory (the default).
	Shared Sharing = "shared"
	// Locked lets one job at a time use the volume; others wait.
	Locked Sharing = "locked"
	// Private mounts a copy-on-write overlay over the volume; the job's
	// writes are discarded when it releases the volume.
	Private Sharing = "private"
)

// ParseSharing checks a sharing mode as written in a job file; "" is Shared.
func ParseSharing(s string) (Sharing, error) {
	switch Sharing(s) {
	case "", Shared:
		return Shared, nil
	case Locked, Private:
		return Sharing(s), nil
	}
	return "", fmt.Errorf("invalid cache sharing %q: want shared, locked or private", s)
}

// Options configure a Manager.
type Options struct {
	// Budget is the total size in bytes the volumes may use on this host;
	// after a release, the least recently used volumes not in use are
	// evicted until the total fits. Zero means no limit.
	Budget int64
	// Logger receives restores, uploads and evictions; nil discards.
	Logger hclog.Logger
	// Remote, if set, restores missing volumes from and saves them to an
	// S3-compatible bucket.
	Remote *Remote
	// ReadOnly restores from the Remote but never uploads to it, whatever
	// the Requests say.
	ReadOnly bool
}

// Manager owns the cache volumes under one directory. Several Managers, in
// this process or others, may share a directory.
type Manager struct {
	dir    string
	budget int64
	log    hclog.Logger
	remote *remote
	// readOnly: never upload (Options.ReadOnly).
	readOnly bool
}

// Open returns a Manager for the volumes under dir (STATE_DIR/caches),
// creating it if needed.
func Open(dir string, opts Options) (*Manager, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("cache dir %q: not an absolute path", dir)
	}
	if opts.Budget < 0 {
		return nil, fmt.Errorf("cache budget %d: must not be negative", opts.Budget)
	}
	// Only root may reach a volume on the host: a job's root may leave a
	// setuid file owned by host root in a shared volume (its root is the
	// range's root, which a volume's idmapped bind maps to 0 on disk).
	for _, d := range []string{"", "locks", "vols", "private"} {
		p := filepath.Join(dir, d)
		if err := os.MkdirAll(p, 0o700); err != nil {
			return nil, fmt.Errorf("cache dir: %w", err)
		}
		if err := os.Chmod(p, 0o700); err != nil {
			return nil, fmt.Errorf("cache dir: %w", err)
		}
	}
	m := &Manager{dir: filepath.Clean(dir), budget: opts.Budget, log: opts.Logger, readOnly: opts.ReadOnly}
	if m.log == nil {
		m.log = hclog.NewNullLogger()
	}
	if opts.Remote != nil {
		r, err := newRemote(*opts.Remote, m.log)
		if err != nil {
			return nil, err
		}
		m.remote = r
	}
	return m, nil
}

// Request asks for one cache volume for one job.
type Request struct {
	// Repo scopes the volume: one repository never sees another's volumes.
	Repo string
	// Name is the cache's name in the job file.
	Name string
	// Key is the evaluated variant key; it may be empty.
	Key string
	// Sharing is the mode; "" means Shared.
	Sharing Sharing
	// Untrusted runs (pull requests from forks) always get Private, so they
	// can read the cache but never change it.
	Untrusted bool
	// Upload lets a successful Release save the volume to the remote when
	// its content changed; set it for trusted branches only.
	Upload bool
	// Wait, if set, is called once when a locked volume is busy, so the
	// job's log can say why it waits.
	Wait func(msg string)
	// Userns is the user namespace of a job whose root is a host id range;
	// nil for a job without one. A shared or locked volume is the same
	// directory either way (Path, owned by the container's ids on disk:
	// the runner binds it idmapped). A private volume's overlay then has an
	// idmapped view of the data as its lower layer and an upper owned by
	// the range's root, so the job writes to it as it would without a
	// namespace, and nothing owned by a range id stays on the host once it
	// is released (the upper goes with it). The runner binds it as it is.
	Userns *idmap.Userns
}

func (r Request) validate() error {
	if err := checkField("repository", r.Repo, 512); err != nil {
		return err
	}
	if err := checkField("name", r.Name, 128); err != nil {
		return err
	}
	if len(r.Key) > 1024 {
		return fmt.Errorf("cache %q: key longer than 1024 bytes", r.Name)
	}
	if strings.ContainsFunc(r.Key, unicode.IsControl) {
		return fmt.Errorf("cache %q: key %q contains control characters", r.Name, r.Key)
	}
	return nil
}

func checkField(what, s string, max int) error {
	switch {
	case s == "":
		return fmt.Errorf("cache %s is empty", what)
	case len(s) > max:
		return fmt.Errorf("cache %s %.40q...: longer than %d bytes", what, s, max)
	case strings.ContainsFunc(s, unicode.IsControl):
		return fmt.Errorf("cache %s %q contains control characters", what, s)
	}
	return nil
}

// VolumeID derives the on-disk name of a volume: a readable prefix from
// repo and name, and a hash of all three parts with their lengths, so
// distinct (repo, name, key) triples never share a name.
func VolumeID(repo, name, key string) string {
	h := sha256.New()
	for _, s := range []string{repo, name, key} {
		fmt.Fprintf(h, "%d:%s\n", len(s), s)
	}
	sum := hex.EncodeToString(h.Sum(nil))[:24]
	base := repo
	if i := strings.LastIndexByte(repo, '/'); i >= 0 {
		base = repo[i+1:]
	}
	prefix := safeName(base, 24) + "-" + safeName(name, 24)
	return prefix + "-" + sum
}

// safeName keeps letters, digits, dot, dash and underscore, up to max bytes.
func safeName(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= max {
			break
		}
		if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' || r == '.') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	out := strings.TrimLeft(b.String(), ".")
	if out == "" {
		out = "_"
	}
	return out
}

// Dir is the directory the volumes are under.
func (m *Manager) Dir() string { return m.dir }

func (m *Manager) guardPath(id string) string { return filepath.Join(m.dir, "locks", id+".lock") }
func (m *Manager) volDir(id string) string    { return filepath.Join(m.dir, "vols", id) }
func (m *Manager) dataDir(id string) string   { return filepath.Join(m.dir, "vols", id, "data") }
func (m *Manager) usersDir(id string) string  { return filepath.Join(m.dir, "vols", id, "users") }

func nonce() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// inUse reports whether a live process holds a user lock of volume id.
func (m *Manager) inUse(id string) bool {
	ents, err := os.ReadDir(m.usersDir(id))
	if err != nil {
		return false
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".lock") && lockfile.Held(filepath.Join(m.usersDir(id), e.Name())) {
			return true
		}
	}
	return false
}

// removeLock deletes a lock file while holding it, then drops it.
func removeLock(l *lockfile.Lock, path string) error {
	err := os.Remove(path)
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return errors.Join(err, l.Release())
}

// withGuard runs fn while holding volume id's guard lock.
func (m *Manager) withGuard(ctx context.Context, id string, fn func() error) error {
	g, err := lockfile.Acquire(ctx, m.guardPath(id))
	if err != nil {
		return fmt.Errorf("cache %s: %w", id, err)
	}
	defer g.Release()
	return fn()
}
