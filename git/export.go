// Package git reads repositories with go-git: the tree of a commit written
// out as a job's workspace, without the repository's history.
package git

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Export writes the tree of rev (a branch, tag, commit hash or "HEAD") in
// the repository at or above repoDir into dst, which must exist and be
// empty. Uncommitted and untracked files are left out. It returns the
// commit hash it exported. Writes go through an os.Root, so a hostile tree
// cannot place a file outside dst.
func Export(ctx context.Context, repoDir, rev, dst string) (string, error) {
	// A bare mirror opens as it is; a work tree's repository may be above.
	repo, err := gogit.PlainOpen(repoDir)
	if err != nil {
		repo, err = gogit.PlainOpenWithOptions(repoDir, &gogit.PlainOpenOptions{DetectDotGit: true})
	}
	if err != nil {
		return "", fmt.Errorf("open repository %s: %w", repoDir, err)
	}
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return "", fmt.Errorf("resolve %s in %s: %w", rev, repoDir, err)
	}
	commit, err := repo.CommitObject(*h)
	if err != nil {
		return "", fmt.Errorf("read commit %s: %w", h, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return "", fmt.Errorf("read tree of %s: %w", h, err)
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return "", fmt.Errorf("export %s: %w", h, err)
	}
	defer root.Close()
	if err := writeTree(ctx, root, tree); err != nil {
		return "", fmt.Errorf("export %s to %s: %w", h.String()[:12], dst, err)
	}
	return h.String(), nil
}

func writeTree(ctx context.Context, root *os.Root, tree *object.Tree) error {
	w := object.NewTreeWalker(tree, true, nil)
	defer w.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		name, entry, err := w.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := checkPath(name); err != nil {
			return err
		}
		if err := writeEntry(root, tree, name, entry); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
}

// checkPath refuses what git itself refuses to check out.
func checkPath(name string) error {
	if name == "" || path.IsAbs(name) {
		return fmt.Errorf("invalid path %q in tree", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." || strings.EqualFold(part, ".git") {
			return fmt.Errorf("invalid path %q in tree", name)
		}
	}
	return nil
}

func writeEntry(root *os.Root, tree *object.Tree, name string, e object.TreeEntry) error {
	switch e.Mode {
	case filemode.Dir, filemode.Submodule:
		// Submodules are not fetched here; they appear as empty directories.
		return root.Mkdir(name, 0o755)
	case filemode.Symlink:
		target, err := blobString(tree, name)
		if err != nil {
			return err
		}
		return root.Symlink(target, name)
	case filemode.Regular, filemode.Deprecated, filemode.Executable:
		perm := os.FileMode(0o644)
		if e.Mode == filemode.Executable {
			perm = 0o755
		}
		return writeBlob(root, tree, name, perm)
	default:
		return fmt.Errorf("unsupported file mode %v", e.Mode)
	}
}

func writeBlob(root *os.Root, tree *object.Tree, name string, perm os.FileMode) error {
	f, err := tree.File(name)
	if err != nil {
		return err
	}
	r, err := f.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	out, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func blobString(tree *object.Tree, name string) (string, error) {
	f, err := tree.File(name)
	if err != nil {
		return "", err
	}
	return f.Contents()
}
