package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jobrun/jobrun/internal/lockfile"
)

// PruneResult says what Prune removed.
type PruneResult struct {
	Images []string // references forgotten to meet the budget
	Layers int      // unpacked layer (and flattened) directories removed
	Blobs  int
	Freed  int64 // bytes on disk
}

// Prune removes unpacked layers and blobs that no image references. With a
// budget above zero it first forgets the least recently used images until
// what the rest use on disk (blobs and unpacked layers, shared ones counted
// once) fits in it. Nothing a live snapshot uses is removed, nor any image
// using it. Pulls and new snapshots wait while Prune runs.
func (s *Store) Prune(ctx context.Context, budget int64) (*PruneResult, error) {
	gc, err := lockfile.Acquire(ctx, s.gcLock())
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	defer gc.Release()
	live, err := s.liveDirs()
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	imgs, err := s.List()
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	res := &PruneResult{}
	du := s.newDiskUsage()
	if budget > 0 {
		if imgs, err = s.fitBudget(imgs, budget, live, du, res); err != nil {
			return res, fmt.Errorf("prune: %w", err)
		}
	}
	keep := map[string]bool{}
	for d := range live {
		keep[d] = true
	}
	for _, img := range imgs {
		for _, e := range s.entries(img) {
			keep[e] = true
		}
	}
	for _, sub := range []string{"layers", "flat", "blobs/sha256", "ids"} {
		if err := s.sweep(ctx, sub, keep, du, res); err != nil {
			return res, fmt.Errorf("prune: %w", err)
		}
	}
	if err := s.saveDiskUsage(du); err != nil {
		// Only time is lost: the next Prune measures again.
		s.log.Warn("cannot remember the store's entry sizes", "error", err)
	}
	// No pull runs while the gc lock is exclusive, so no download lock is held.
	locks, _ := os.ReadDir(filepath.Join(s.dir, "locks"))
	for _, l := range locks {
		os.Remove(filepath.Join(s.dir, "locks", l.Name()))
	}
	return res, nil
}

// entries are the store paths (relative) an image uses.
func (s *Store) entries(img *Image) []string {
	out := []string{"blobs/sha256/" + hexOf(img.Manifest), "blobs/sha256/" + hexOf(img.ConfigDigest)}
	for _, l := range img.Layers {
		out = append(out, "blobs/sha256/"+hexOf(l.Digest), "ids/"+hexOf(l.DiffID)+".json")
		if img.Flat == "" {
			out = append(out, "layers/"+hexOf(l.DiffID))
		}
	}
	if img.Flat != "" {
		out = append(out, "flat/"+img.Flat, "ids/flat-"+img.Flat+".json")
	}
	return out
}

func hexOf(d string) string { return strings.TrimPrefix(d, "sha256:") }

// fitBudget forgets the least recently used images that no live snapshot
// uses until the rest fit in budget.
func (s *Store) fitBudget(imgs []*Image, budget int64, live map[string]bool, du *diskUsage, res *PruneResult) ([]*Image, error) {
	used := func(i *Image) time.Time {
		if fi, err := os.Stat(s.recordPath(i.Ref)); err == nil {
			return fi.ModTime()
		}
		return i.Created
	}
	sort.Slice(imgs, func(i, j int) bool { return used(imgs[i]).Before(used(imgs[j])) })
	total := func(imgs []*Image) int64 {
		seen, n := map[string]bool{}, int64(0)
		for _, img := range imgs {
			for _, e := range s.entries(img) {
				if !seen[e] {
					seen[e] = true
					n += du.of(filepath.Join(s.dir, e))
				}
			}
		}
		return n
	}
	kept := imgs
	for i := 0; i < len(kept) && total(kept) > budget; {
		img := kept[i]
		if usesAny(s.entries(img), live) {
			i++
			continue
		}
		if err := os.Remove(s.recordPath(img.Ref)); err != nil {
			return nil, err
		}
		res.Images = append(res.Images, img.Ref)
		kept = append(kept[:i:i], kept[i+1:]...)
	}
	return kept, nil
}

func usesAny(entries []string, live map[string]bool) bool {
	for _, e := range entries {
		if live[e] {
			return true
		}
	}
	return false
}

// liveDirs lists the store paths (relative) that snapshots a live process
// holds are mounted from.
func (s *Store) liveDirs() (map[string]bool, error) {
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
		b, err := os.ReadFile(filepath.Join(dir, "lowers"))
		if err != nil {
			continue
		}
		for _, d := range strings.Fields(string(b)) {
			live[d] = true
		}
	}
	return live, nil
}

// sweep removes the entries of the store's subdirectory sub not in keep.
func (s *Store) sweep(ctx context.Context, sub string, keep map[string]bool, du *diskUsage, res *PruneResult) error {
	dir := filepath.Join(s.dir, sub)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		if keep[sub+"/"+e.Name()] {
			continue
		}
		p := filepath.Join(dir, e.Name())
		n := du.of(p)
		if err := removeTree(p); err != nil {
			return err
		}
		du.removed(p)
		res.Freed += n
		switch sub {
		case "blobs/sha256":
			res.Blobs++
		case "layers", "flat":
			res.Layers++
		}
	}
	return nil
}
