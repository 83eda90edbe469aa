package artifacts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Ref names one attempt of one job: its files live under
// REPO/RUN/JOB/ATTEMPT/ in a store.
type Ref struct {
	// Repo may contain slashes ("github.com/org/app").
	Repo string
	// Run and Job are single path segments (the sanitised job id).
	Run string
	Job string
	// Attempt counts from 1; a retried job gets the next number, so it
	// never overwrites an earlier attempt.
	Attempt int
}

// String is the attempt's prefix, REPO/RUN/JOB/ATTEMPT.
func (r Ref) String() string {
	return r.Repo + "/" + r.Run + "/" + r.Job + "/" + strconv.Itoa(r.Attempt)
}

// jobPrefix is REPO/RUN/JOB.
func (r Ref) jobPrefix() string { return r.Repo + "/" + r.Run + "/" + r.Job }

// Validate checks that every part of r is a safe, non-empty name.
func (r Ref) Validate() error {
	if r.Repo == "" {
		return fmt.Errorf("artifacts: empty repository name")
	}
	for _, seg := range strings.Split(r.Repo, "/") {
		if err := checkSegment("repository "+strconv.Quote(r.Repo), seg); err != nil {
			return err
		}
	}
	if err := checkSegment("run", r.Run); err != nil {
		return err
	}
	if err := checkSegment("job", r.Job); err != nil {
		return err
	}
	if r.Attempt < 1 {
		return fmt.Errorf("artifacts: attempt %d: counts from 1", r.Attempt)
	}
	return nil
}

func checkSegment(what, s string) error {
	switch {
	case s == "" || s == "." || s == "..":
		return fmt.Errorf("artifacts: %s: %q is not a valid name", what, s)
	case len(s) > 255:
		return fmt.Errorf("artifacts: %s: name longer than 255 bytes", what)
	case strings.ContainsAny(s, `/\`) || strings.ContainsFunc(s, unicode.IsControl):
		return fmt.Errorf("artifacts: %s: %q contains a slash or control character", what, s)
	case strings.HasSuffix(s, manifestSuffix) || strings.HasSuffix(s, claimSuffix):
		return fmt.Errorf("artifacts: %s: %q ends with a reserved suffix", what, s)
	}
	return nil
}

// ErrInvalidPath reports a file path a store refuses: bad input, not a
// fault of the store.
var ErrInvalidPath = errors.New("invalid file path")

// checkPath validates a stored file's path (from a manifest or a caller).
func checkPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsRune(p, '\\') || strings.ContainsFunc(p, unicode.IsControl) {
		return fmt.Errorf("artifacts: %w %q", ErrInvalidPath, p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("artifacts: %w %q", ErrInvalidPath, p)
		}
	}
	return nil
}

// Names of the per-attempt marker objects, siblings of the ATTEMPT
// directory: the claim made before the first file, and the manifest made
// after the last.
const (
	claimSuffix    = ".claim"
	manifestSuffix = ".manifest.json"
)

// Manifest lists a complete attempt's files with their sha256 sums.
type Manifest struct {
	Repo    string         `json:"repo"`
	Run     string         `json:"run"`
	Job     string         `json:"job"`
	Attempt int            `json:"attempt"`
	Created time.Time      `json:"created"`
	Expires time.Time      `json:"expires,omitzero"`
	Files   []ManifestFile `json:"files"`
	Skipped []Skipped      `json:"skipped,omitempty"`
}

// Ref returns the attempt the manifest describes.
func (m *Manifest) Ref() Ref { return Ref{Repo: m.Repo, Run: m.Run, Job: m.Job, Attempt: m.Attempt} }

// ManifestFile is one stored file.
type ManifestFile struct {
	Path   string      `json:"path"`
	Size   int64       `json:"size"`
	Mode   fs.FileMode `json:"mode"`
	SHA256 string      `json:"sha256"`
}

// ErrAttemptExists reports that a store already holds (part of) an
// attempt, so it cannot be written again.
var ErrAttemptExists = errors.New("attempt already stored")

// ErrNotFound reports a missing attempt or file.
var ErrNotFound = errors.New("not found")

// Store keeps artifacts. Upload and Fetch drive it; the scheduler's web UI
// reads through Manifest, Open and List.
type Store interface {
	// Begin claims ref, failing with ErrAttemptExists if the store holds
	// anything of it already.
	Begin(ctx context.Context, ref Ref) error
	// Put stores the file at path of a claimed attempt from r, which holds
	// size bytes. r is an io.ReaderAt so large files go up in parallel
	// parts.
	Put(ctx context.Context, ref Ref, path string, r io.ReaderAt, size int64) error
	// Commit writes the manifest, after every Put succeeded, which makes the
	// attempt complete.
	Commit(ctx context.Context, m *Manifest) error
	// Abort removes what Put stored for an attempt that will not commit.
	Abort(ctx context.Context, ref Ref) error
	// Manifest returns a complete attempt's manifest, or ErrNotFound.
	Manifest(ctx context.Context, ref Ref) (*Manifest, error)
	// Open reads one stored file of a complete attempt.
	Open(ctx context.Context, ref Ref, path string) (io.ReadCloser, error)
	// List returns the complete attempts of a run, by job and attempt.
	List(ctx context.Context, repo, run string) ([]Ref, error)
	// Sweep removes attempts whose manifest expired before now, and
	// attempts that never committed and were claimed over a day before
	// now. It returns what it removed.
	Sweep(ctx context.Context, now time.Time) ([]Ref, error)
}

// abandonedAfter is how long an uncommitted attempt may stay before Sweep
// treats it as left by a crashed uploader.
const abandonedAfter = 24 * time.Hour

// ShouldUpload applies a job file's `when` (on_success, on_failure or
// always; "" is on_success) to the job's outcome.
func ShouldUpload(when string, jobOK bool) (bool, error) {
	switch when {
	case "", "on_success":
		return jobOK, nil
	case "on_failure":
		return !jobOK, nil
	case "always":
		return true, nil
	}
	return false, fmt.Errorf("artifacts: when = %q: want on_success, on_failure or always", when)
}

// parseAttempt reads "N" + suffix as an attempt number.
func parseAttempt(name, suffix string) (int, bool) {
	s, ok := strings.CutSuffix(name, suffix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 1 && strconv.Itoa(n) == s
}
