// Package artifacts collects a finished job's files by glob from its
// workspace and keeps them in a Store: a local directory or an
// S3-compatible bucket. An attempt's files live under
// REPO/RUN/JOB/ATTEMPT/PATH; a sha256 manifest, written after every file
// succeeded, makes the attempt complete.
//
// Collection never leaves the workspace: every lookup goes through an
// os.Root, which refuses paths and symlinks that lead out of it, so the
// checks cannot be raced by swapping a file for a symlink.
//
// Symlinks are never stored. Object stores have no links, and storing a
// link's target would upload data the pattern did not name; so a symlink
// that a pattern matches, or that lies in a matched directory, is skipped
// and reported (with "points outside the workspace" when it does). Devices,
// sockets and named pipes are skipped and reported too.
package artifacts

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/jobrun/jobrun/internal/units"
)

// CollectOptions tune Collect.
type CollectOptions struct {
	// Required makes a pattern that matches nothing an error instead of a
	// warning.
	Required bool
	// MaxTotal is the most bytes one job may store; 0 means no limit.
	MaxTotal int64
}

// File is one file to store.
type File struct {
	// Path is slash-separated and relative to the workspace.
	Path string
	Size int64
	// Mode holds the permission bits.
	Mode fs.FileMode
}

// Skipped is a matched entry that is not stored, and why.
type Skipped struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Collection is what Collect found.
type Collection struct {
	// Workspace is the directory the paths are relative to.
	Workspace string
	// Files are sorted by path, each once.
	Files []File
	// Skipped lists symlinks and special files that matched.
	Skipped []Skipped
	// Warnings say which patterns matched nothing (when not Required).
	Warnings []string
	// Total is the sum of the files' sizes.
	Total int64
}

// LimitError reports that the files exceed the per-job limit.
type LimitError struct {
	Path  string // the file that crossed the limit
	Size  int64
	Total int64 // the total including Path
	Limit int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("artifacts: %s (%s) brings the total to %s, over the per-job limit of %s",
		e.Path, units.FormatSize(e.Size), units.FormatSize(e.Total), units.FormatSize(e.Limit))
}

// ErrNoMatch is wrapped by the error for a required pattern that matched
// nothing.
var ErrNoMatch = errors.New("matched no files")

// Collect finds the files that patterns match in workspace. Patterns are
// relative, slash-separated doublestar globs ("bin/**", "*.out"); a pattern
// that names a directory collects everything below it.
func Collect(ctx context.Context, workspace string, patterns []string, opts CollectOptions) (*Collection, error) {
	root, err := os.OpenRoot(workspace)
	if err != nil {
		return nil, fmt.Errorf("artifacts: workspace: %w", err)
	}
	defer root.Close()
	c := &collector{ctx: ctx, root: root, opts: opts, seen: map[string]bool{}, out: &Collection{Workspace: workspace}}
	for _, p := range patterns {
		clean, err := checkPattern(p)
		if err != nil {
			return nil, err
		}
		before := c.matched
		if err := c.glob(clean); err != nil {
			return nil, err
		}
		if c.matched == before {
			msg := fmt.Sprintf("artifacts: pattern %q matched no files", p)
			if opts.Required {
				return nil, fmt.Errorf("artifacts: pattern %q %w (required)", p, ErrNoMatch)
			}
			c.out.Warnings = append(c.out.Warnings, msg)
		}
	}
	sort.Slice(c.out.Files, func(i, j int) bool { return c.out.Files[i].Path < c.out.Files[j].Path })
	return c.out, nil
}

// checkPattern refuses patterns that could name something outside the
// workspace, with a message saying which and why.
func checkPattern(p string) (string, error) {
	q := strings.TrimPrefix(p, "./")
	switch {
	case q == "":
		return "", fmt.Errorf("artifacts: empty path pattern")
	case strings.HasPrefix(q, "/"):
		return "", fmt.Errorf("artifacts: pattern %q: must be relative to the workspace", p)
	case strings.ContainsRune(q, '\\'):
		return "", fmt.Errorf("artifacts: pattern %q: use / to separate directories", p)
	}
	for _, part := range strings.Split(q, "/") {
		if part == ".." {
			return "", fmt.Errorf("artifacts: pattern %q: must not have a parent (..) component", p)
		}
	}
	if !doublestar.ValidatePattern(q) {
		return "", fmt.Errorf("artifacts: pattern %q: malformed glob", p)
	}
	return strings.TrimSuffix(path.Clean(q), "/"), nil
}

type collector struct {
	ctx     context.Context
	root    *os.Root
	opts    CollectOptions
	seen    map[string]bool
	matched int
	out     *Collection
}

func hasMeta(p string) bool { return strings.ContainsAny(p, "*?[{") }

func (c *collector) glob(pattern string) error {
	if !hasMeta(pattern) {
		// A literal name: look at it without following it, so a symlink
		// is reported rather than silently resolved or ignored.
		if _, err := c.root.Lstat(pattern); err != nil {
			return nil // matches nothing
		}
		return c.add(pattern, true)
	}
	return doublestar.GlobWalk(c.root.FS(), pattern, func(p string, _ fs.DirEntry) error {
		return c.add(p, true)
	}, doublestar.WithNoFollow())
}

// add records the entry at name; directories add what is below them.
func (c *collector) add(name string, top bool) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	fi, err := c.root.Lstat(name)
	if err != nil {
		return fmt.Errorf("artifacts: %s: %w", name, err)
	}
	if top {
		c.matched++
	}
	mode := fi.Mode()
	switch {
	case mode.IsDir():
		ents, err := fs.ReadDir(c.root.FS(), name)
		if err != nil {
			return fmt.Errorf("artifacts: %s: %w", name, err)
		}
		for _, e := range ents {
			if err := c.add(path.Join(name, e.Name()), false); err != nil {
				return err
			}
		}
		return nil
	case mode&fs.ModeSymlink != 0:
		c.skip(name, c.symlinkReason(name))
		return nil
	case !mode.IsRegular():
		c.skip(name, "not a regular file ("+kind(mode)+")")
		return nil
	}
	if c.seen[name] {
		return nil
	}
	c.seen[name] = true
	c.out.Total += fi.Size()
	if c.opts.MaxTotal > 0 && c.out.Total > c.opts.MaxTotal {
		return &LimitError{Path: name, Size: fi.Size(), Total: c.out.Total, Limit: c.opts.MaxTotal}
	}
	c.out.Files = append(c.out.Files, File{Path: name, Size: fi.Size(), Mode: mode.Perm()})
	return nil
}

func (c *collector) skip(name, reason string) {
	if c.seen[name] {
		return
	}
	c.seen[name] = true
	c.out.Skipped = append(c.out.Skipped, Skipped{Path: name, Reason: reason})
}

func (c *collector) symlinkReason(name string) string {
	target, _ := c.root.Readlink(name)
	if _, err := c.root.Stat(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("symlink to %s points outside the workspace; not stored", target)
	}
	return fmt.Sprintf("symlink to %s; links are not stored", target)
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	}
	return m.Type().String()
}
