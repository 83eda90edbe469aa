package artifacts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sync"
	"syscall"
	"time"
)

// UploadOptions tune Upload.
type UploadOptions struct {
	// Workers is how many files go up at once; 0 means 8.
	Workers int
	// ExpireIn, if positive, makes the attempt expire that long after the
	// upload (see Store.Sweep).
	ExpireIn time.Duration
}

// Upload stores c's files as attempt ref: it claims the attempt, puts the
// files in parallel, and writes the manifest last, only after every file
// succeeded. On failure it removes what it stored and returns the first
// error, naming the file; the attempt then has no manifest.
func Upload(ctx context.Context, st Store, ref Ref, c *Collection, opts UploadOptions) (*Manifest, error) {
	if err := ref.Validate(); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(c.Workspace)
	if err != nil {
		return nil, fmt.Errorf("artifacts: workspace: %w", err)
	}
	defer root.Close()
	if err := st.Begin(ctx, ref); err != nil {
		return nil, err
	}
	m := &Manifest{Repo: ref.Repo, Run: ref.Run, Job: ref.Job, Attempt: ref.Attempt,
		Created: time.Now().UTC(), Files: make([]ManifestFile, len(c.Files)), Skipped: c.Skipped}
	if opts.ExpireIn > 0 {
		m.Expires = m.Created.Add(opts.ExpireIn)
	}
	err = parallel(ctx, len(c.Files), opts.Workers, func(ctx context.Context, i int) error {
		f := c.Files[i]
		sum, err := putFile(ctx, st, ref, root, f)
		if err != nil {
			return fmt.Errorf("artifacts: upload %s: %w", f.Path, err)
		}
		m.Files[i] = ManifestFile{Path: f.Path, Size: f.Size, Mode: f.Mode, SHA256: sum}
		return nil
	})
	if err == nil {
		err = st.Commit(ctx, m)
	}
	if err != nil {
		if aerr := st.Abort(context.WithoutCancel(ctx), ref); aerr != nil {
			err = errors.Join(err, aerr)
		}
		return nil, err
	}
	return m, nil
}

// putFile opens f without following a symlink, checks it is still the
// regular file Collect saw, and stores it while hashing it.
func putFile(ctx context.Context, st Store, ref Ref, root *os.Root, f File) (string, error) {
	fh, err := root.OpenFile(f.Path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() || fi.Size() != f.Size {
		return "", fmt.Errorf("changed since it was collected (now %s, %d bytes)", fi.Mode().Type(), fi.Size())
	}
	// Hash beside the upload: both read the same pages, on two cores.
	sumc := make(chan string, 1)
	go func() {
		h := sha256.New()
		io.Copy(h, io.NewSectionReader(fh, 0, f.Size))
		sumc <- hex.EncodeToString(h.Sum(nil))
	}()
	err = st.Put(ctx, ref, f.Path, fh, f.Size)
	sum := <-sumc
	return sum, err
}

// parallel runs fn for 0..n-1 on up to workers goroutines, stopping at the
// first error, which it returns.
func parallel(ctx context.Context, n, workers int, fn func(context.Context, int) error) error {
	if workers <= 0 {
		workers = 8
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(workers, n) {
		wg.Go(func() {
			for i := range next {
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel(err) })
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// Fetch places the files of attempt ref into dir (a dependent job's
// workspace, before its first step), verifying each file's size and sha256
// against the manifest. Writes go through an os.Root, so neither a path in
// the manifest nor a symlink already in dir can lead outside it; each file
// is written to a temporary name and renamed over its place, which
// replaces (and never follows) whatever was there.
func Fetch(ctx context.Context, st Store, ref Ref, dir string) (*Manifest, error) {
	m, err := st.Manifest(ctx, ref)
	if err != nil {
		return nil, err
	}
	for _, f := range m.Files {
		if err := checkPath(f.Path); err != nil {
			return nil, fmt.Errorf("artifacts: manifest of %s: %w", ref, err)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("artifacts: fetch into %s: %w", dir, err)
	}
	defer root.Close()
	err = parallel(ctx, len(m.Files), 8, func(ctx context.Context, i int) error {
		f := m.Files[i]
		if err := fetchFile(ctx, st, ref, root, f); err != nil {
			return fmt.Errorf("artifacts: fetch %s of %s: %w", f.Path, ref, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func fetchFile(ctx context.Context, st Store, ref Ref, root *os.Root, f ManifestFile) error {
	if d := path.Dir(f.Path); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	rc, err := st.Open(ctx, ref, f.Path)
	if err != nil {
		return err
	}
	defer rc.Close()
	tmp := path.Join(path.Dir(f.Path), ".jobrun-fetch-"+randHex())
	out, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), rc)
	if err == nil {
		err = out.Chmod(f.Mode.Perm())
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && (n != f.Size || hex.EncodeToString(h.Sum(nil)) != f.SHA256) {
		err = fmt.Errorf("content does not match the manifest (%d bytes, want %d)", n, f.Size)
	}
	if err == nil {
		err = root.Rename(tmp, f.Path)
	}
	if err != nil {
		root.Remove(tmp)
	}
	return err
}

func randHex() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
