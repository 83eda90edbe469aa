package git

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/jobrun/jobrun/internal/redact"
)

// SubmoduleOptions tune ExportSubmodules.
type SubmoduleOptions struct {
	// MirrorDir holds a mirror per submodule URL (see MirrorPath).
	MirrorDir string
	// ParentURL is the clone URL of the repository whose tree is
	// exported: relative submodule URLs ("../lib.git") resolve against
	// it, and Auth is sent only to its host.
	ParentURL string
	Auth      Auth
}

// maxSubmoduleDepth bounds submodules of submodules.
const maxSubmoduleDepth = 5

// ExportSubmodules fills the submodules of rev, already exported into dst
// by Export (as empty directories), with their recorded commits, fetched
// into mirrors of their own; their submodules too. .gitmodules is the
// repository's to write, so only http(s) and ssh URLs are followed (a
// path or file:// URL could read another repository of this host), and
// the credentials go only to the parent's host.
func ExportSubmodules(ctx context.Context, repoDir, rev, dst string, o SubmoduleOptions) error {
	return redact.Error(exportSubmodules(ctx, repoDir, rev, dst, o, 0))
}

func exportSubmodules(ctx context.Context, repoDir, rev, dst string, o SubmoduleOptions, depth int) error {
	c, err := commitAt(repoDir, rev)
	if err != nil {
		return err
	}
	f, err := c.File(".gitmodules")
	if errors.Is(err, object.ErrFileNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read .gitmodules at %s: %w", short(c.Hash.String()), err)
	}
	text, err := f.Contents()
	if err != nil {
		return fmt.Errorf("read .gitmodules at %s: %w", short(c.Hash.String()), err)
	}
	mods := config.NewModules()
	if err := mods.Unmarshal([]byte(text)); err != nil {
		return fmt.Errorf(".gitmodules at %s: %w", short(c.Hash.String()), err)
	}
	if depth >= maxSubmoduleDepth && len(mods.Submodules) > 0 {
		return fmt.Errorf("submodules nested deeper than %d", maxSubmoduleDepth)
	}
	tree, err := c.Tree()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(mods.Submodules))
	for n := range mods.Submodules {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sub := mods.Submodules[n]
		if err := sub.Validate(); err != nil {
			return fmt.Errorf("submodule %q: %w", n, err)
		}
		if err := checkPath(sub.Path); err != nil {
			return fmt.Errorf("submodule %q: %w", n, err)
		}
		e, err := tree.FindEntry(sub.Path)
		if err != nil || e.Mode != filemode.Submodule {
			continue // .gitmodules names a path the tree has no gitlink at, as git ignores it
		}
		u, err := resolveURL(o.ParentURL, sub.URL)
		if err != nil {
			return fmt.Errorf("submodule %q: %w", n, err)
		}
		so := MirrorOptions{}
		if sameHost(u, o.ParentURL) {
			so.Auth = o.Auth
		}
		mirror := MirrorPath(o.MirrorDir, u)
		if !HasCommit(mirror, e.Hash.String()) {
			if err := Mirror(ctx, mirror, u, so); err != nil {
				return fmt.Errorf("submodule %q: %w", n, err)
			}
		}
		if !HasCommit(mirror, e.Hash.String()) {
			return fmt.Errorf("submodule %q: commit %s is on no branch or tag of %s", n, short(e.Hash.String()), u)
		}
		into := filepath.Join(dst, filepath.FromSlash(sub.Path))
		if _, err := Export(ctx, mirror, e.Hash.String(), into); err != nil {
			return fmt.Errorf("submodule %q: %w", n, err)
		}
		next := o
		next.ParentURL = u
		next.Auth = so.Auth
		if err := exportSubmodules(ctx, mirror, e.Hash.String(), into, next, depth+1); err != nil {
			return fmt.Errorf("submodule %q: %w", n, err)
		}
	}
	return nil
}

// resolveURL resolves a submodule's URL against its parent's, as git
// does for "./" and "../" URLs, and refuses what is not http(s) or ssh.
func resolveURL(parent, sub string) (string, error) {
	if strings.HasPrefix(sub, "./") || strings.HasPrefix(sub, "../") {
		p, err := url.Parse(parent)
		if err != nil || p.Scheme == "" || p.Host == "" {
			return "", fmt.Errorf("relative URL %q needs an http(s) or ssh:// parent URL, not %q", sub, parent)
		}
		p.Path = path.Join(p.Path, sub)
		sub = p.String()
	}
	ep, err := transport.NewEndpoint(sub)
	if err != nil {
		return "", fmt.Errorf("URL %q: %w", sub, err)
	}
	switch ep.Protocol {
	case "http", "https", "ssh":
		return sub, nil
	}
	return "", fmt.Errorf("URL %q: only http(s) and ssh submodules are fetched", sub)
}

func sameHost(a, b string) bool {
	ea, err1 := transport.NewEndpoint(a)
	eb, err2 := transport.NewEndpoint(b)
	return err1 == nil && err2 == nil && ea.Host == eb.Host && ea.Port == eb.Port && ea.Protocol == eb.Protocol
}
