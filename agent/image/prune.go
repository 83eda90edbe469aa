package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/jobrun/jobrun/internal/lockfile"
)

// PruneResult says what Prune removed.
type PruneResult struct {
	Images []string // references forgotten to meet the budget
	Layers int
	Blobs  int
	Freed  int64 // bytes of blobs removed
}

// Prune removes unpacked layers and blobs that no image references. With a
// budget above zero it first forgets the least recently stored images until
// the images' blobs fit in it. A layer in use by a live snapshot is never
// removed, nor is any image using one. Pulls and new snapshots wait while
// Prune runs.
func (s *Store) Prune(ctx context.Context, budget int64) (*PruneResult, error) {
	gc, err := lockfile.Acquire(ctx, s.gcLock())
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	defer gc.Release()
	inUse, err := s.liveLayers()
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	imgs, err := s.List()
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	res := &PruneResult{}
	if budget > 0 {
		imgs, err = s.fitBudget(imgs, budget, inUse, res)
		if err != nil {
			return res, fmt.Errorf("prune: %w", err)
		}
	}
	keepLayers, keepBlobs := map[string]bool{}, map[string]bool{}
	for id := range inUse {
		keepLayers[id] = true
	}
	for _, img := range imgs {
		for _, l := range img.Layers {
			keepLayers[strings.TrimPrefix(l.DiffID, "sha256:")] = true
			keepBlobs[strings.TrimPrefix(l.Digest, "sha256:")] = true
		}
	}
	if err := s.sweep(filepath.Join(s.dir, "layers"), keepLayers, func(int64) { res.Layers++ }); err != nil {
		return res, err
	}
	err = s.sweep(filepath.Join(s.dir, "blobs", "sha256"), keepBlobs, func(n int64) { res.Blobs++; res.Freed += n })
	return res, err
}

// fitBudget forgets the oldest images not in use until the rest fit.
func (s *Store) fitBudget(imgs []*Image, budget int64, inUse map[string]bool, res *PruneResult) ([]*Image, error) {
	sort.Slice(imgs, func(i, j int) bool { return imgs[i].Created.Before(imgs[j].Created) })
	var total int64
	for _, img := range imgs {
		total += img.Size()
	}
	var kept []*Image
	for _, img := range imgs {
		if total > budget && !usesAny(img, inUse) {
			if err := os.Remove(s.recordPath(img.Ref)); err != nil {
				return nil, err
			}
			total -= img.Size()
			res.Images = append(res.Images, img.Ref)
			continue
		}
		kept = append(kept, img)
	}
	return kept, nil
}

func usesAny(img *Image, layers map[string]bool) bool {
	for _, l := range img.Layers {
		if layers[strings.TrimPrefix(l.DiffID, "sha256:")] {
			return true
		}
	}
	return false
}

// liveLayers lists the DiffIDs (hex) used by snapshots a live process holds.
func (s *Store) liveLayers() (map[string]bool, error) {
	ents, err := os.ReadDir(s.snaps)
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, e := range ents {
		dir := filepath.Join(s.snaps, e.Name())
		if !e.IsDir() || !lockfile.Held(dir+".lock") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "layers"))
		if err != nil {
			continue
		}
		for _, id := range strings.Fields(string(b)) {
			live[strings.TrimPrefix(id, "sha256:")] = true
		}
	}
	return live, nil
}

// sweep removes the entries of dir not in keep.
func (s *Store) sweep(dir string, keep map[string]bool, removed func(size int64)) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	for _, e := range ents {
		if keep[e.Name()] {
			continue
		}
		var size int64
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("prune: %w", err)
		}
		removed(size)
	}
	return nil
}
