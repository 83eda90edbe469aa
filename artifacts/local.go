package artifacts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Local is a Store in a directory of this host (STATE_DIR/artifacts by
// default): files under REPO/RUN/JOB/ATTEMPT/, with ATTEMPT.claim and
// ATTEMPT.manifest.json beside that directory.
type Local struct {
	dir string
}

// NewLocal returns a Store in dir, creating it if needed.
func NewLocal(dir string) (*Local, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("artifacts: store dir %q: not an absolute path", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("artifacts: store dir: %w", err)
	}
	return &Local{dir: filepath.Clean(dir)}, nil
}

func (l *Local) root() (*os.Root, error) {
	r, err := os.OpenRoot(l.dir)
	if err != nil {
		return nil, fmt.Errorf("artifacts: store %s: %w", l.dir, err)
	}
	return r, nil
}

func claimName(ref Ref) string    { return ref.String() + claimSuffix }
func manifestName(ref Ref) string { return ref.String() + manifestSuffix }

// Begin creates the claim file exclusively: of two writers of one attempt,
// exactly one wins.
func (l *Local) Begin(ctx context.Context, ref Ref) error {
	if err := ref.Validate(); err != nil {
		return err
	}
	r, err := l.root()
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.MkdirAll(ref.jobPrefix(), 0o755); err != nil {
		return fmt.Errorf("artifacts: %s: %w", ref, err)
	}
	f, err := r.OpenFile(claimName(ref), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("artifacts: %s: %w", ref, ErrAttemptExists)
	}
	if err != nil {
		return fmt.Errorf("artifacts: %s: %w", ref, err)
	}
	return f.Close()
}

// Put writes the file under a temporary name and renames it into place.
func (l *Local) Put(ctx context.Context, ref Ref, p string, src io.ReaderAt, size int64) error {
	if err := checkPath(p); err != nil {
		return err
	}
	r, err := l.root()
	if err != nil {
		return err
	}
	defer r.Close()
	name := ref.String() + "/" + p
	if err := r.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	tmp := name + ".tmp-" + randHex()
	f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, &ctxReader{ctx, io.NewSectionReader(src, 0, size)})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.Rename(tmp, name)
	}
	if err != nil {
		r.Remove(tmp)
	}
	return err
}

// ctxReader stops a long copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Commit writes the manifest atomically (temporary file, rename).
func (l *Local) Commit(ctx context.Context, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	r, err := l.root()
	if err != nil {
		return err
	}
	defer r.Close()
	name := manifestName(m.Ref())
	if _, err := r.Lstat(name); err == nil {
		return fmt.Errorf("artifacts: %s: %w", m.Ref(), ErrAttemptExists)
	}
	tmp := name + ".tmp-" + randHex()
	if err := r.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("artifacts: manifest of %s: %w", m.Ref(), err)
	}
	if err := r.Rename(tmp, name); err != nil {
		r.Remove(tmp)
		return fmt.Errorf("artifacts: manifest of %s: %w", m.Ref(), err)
	}
	return nil
}

// Abort removes the attempt's files and claim.
func (l *Local) Abort(ctx context.Context, ref Ref) error {
	return l.remove(ref)
}

func (l *Local) remove(ref Ref) error {
	r, err := l.root()
	if err != nil {
		return err
	}
	defer r.Close()
	var errs []error
	for _, name := range []string{manifestName(ref), ref.String(), claimName(ref)} {
		if err := r.RemoveAll(name); err != nil {
			errs = append(errs, fmt.Errorf("artifacts: remove %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Manifest reads the attempt's manifest.
func (l *Local) Manifest(ctx context.Context, ref Ref) (*Manifest, error) {
	if err := ref.Validate(); err != nil {
		return nil, err
	}
	r, err := l.root()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := r.ReadFile(manifestName(ref))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("artifacts: %s: %w", ref, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("artifacts: manifest of %s: %w", ref, err)
	}
	return &m, nil
}

// Open reads one stored file of a complete attempt.
func (l *Local) Open(ctx context.Context, ref Ref, p string) (io.ReadCloser, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	if _, err := l.Manifest(ctx, ref); err != nil {
		return nil, err
	}
	r, err := l.root()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	f, err := r.OpenFile(ref.String()+"/"+p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("artifacts: %s of %s: %w", p, ref, ErrNotFound)
	}
	return f, err
}

// List returns the complete attempts of a run.
func (l *Local) List(ctx context.Context, repo, run string) ([]Ref, error) {
	probe := Ref{Repo: repo, Run: run, Job: "x", Attempt: 1}
	if err := probe.Validate(); err != nil {
		return nil, err
	}
	r, err := l.root()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	jobs, err := fs.ReadDir(r.FS(), repo+"/"+run)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Ref
	for _, j := range jobs {
		if !j.IsDir() {
			continue
		}
		ents, err := fs.ReadDir(r.FS(), repo+"/"+run+"/"+j.Name())
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if n, ok := parseAttempt(e.Name(), manifestSuffix); ok {
				out = append(out, Ref{Repo: repo, Run: run, Job: j.Name(), Attempt: n})
			}
		}
	}
	sortRefs(out)
	return out, nil
}

func sortRefs(refs []Ref) {
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].Job != refs[j].Job {
			return refs[i].Job < refs[j].Job
		}
		return refs[i].Attempt < refs[j].Attempt
	})
}

// Sweep walks the store for claims and manifests (see Store.Sweep).
func (l *Local) Sweep(ctx context.Context, now time.Time) ([]Ref, error) {
	var removed []Ref
	var errs []error
	err := filepath.WalkDir(l.dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed by this sweep
		}
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		n, ok := parseAttempt(d.Name(), claimSuffix)
		if !ok || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(l.dir, filepath.Dir(p))
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if len(parts) < 3 {
			return nil
		}
		ref := Ref{Repo: strings.Join(parts[:len(parts)-2], "/"), Run: parts[len(parts)-2], Job: parts[len(parts)-1], Attempt: n}
		if ref.Validate() != nil {
			return nil
		}
		expired, err := l.expired(ctx, ref, p, now)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		if expired {
			if err := l.remove(ref); err != nil {
				errs = append(errs, err)
			} else {
				removed = append(removed, ref)
			}
		}
		return nil
	})
	return removed, errors.Join(append(errs, err)...)
}

func (l *Local) expired(ctx context.Context, ref Ref, claim string, now time.Time) (bool, error) {
	m, err := l.Manifest(ctx, ref)
	if errors.Is(err, ErrNotFound) {
		fi, err := os.Stat(claim)
		if err != nil {
			return false, err
		}
		return now.Sub(fi.ModTime()) > abandonedAfter, nil
	}
	if err != nil {
		return false, err
	}
	return !m.Expires.IsZero() && m.Expires.Before(now), nil
}
