package git

import (
	"errors"
	"fmt"

	gogit "github.com/go-git/go-git/v5"
)

// WorkTreeRoot returns the top directory of the work tree that holds dir
// (dir itself or a directory above it), as Export finds its repository,
// or "" if dir is a bare repository (a mirror), which has no work tree.
func WorkTreeRoot(dir string) (string, error) {
	repo, err := gogit.PlainOpen(dir)
	if err != nil {
		repo, err = gogit.PlainOpenWithOptions(dir, &gogit.PlainOpenOptions{DetectDotGit: true})
	}
	if err != nil {
		return "", fmt.Errorf("open repository at %s: %w", dir, err)
	}
	wt, err := repo.Worktree()
	if errors.Is(err, gogit.ErrIsBareRepository) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("repository at %s: %w", dir, err)
	}
	return wt.Filesystem.Root(), nil
}
