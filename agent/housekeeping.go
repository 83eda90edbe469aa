package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/agent/config"
	"github.com/jobrun/jobrun/agent/image"
	"github.com/jobrun/jobrun/cache"
	"github.com/jobrun/jobrun/internal/units"
)

// DefaultSweepInterval is how often a Housekeeper sweeps between jobs.
const DefaultSweepInterval = 5 * time.Minute

// Housekeeper keeps a host's cache volumes and image store within their
// budgets: it evicts the least recently used caches and images that no
// live job holds. It runs after each job (Runner.AfterJob) and on a timer;
// it never fails a job, it only logs what it could not do.
type Housekeeper struct {
	// Caches may be nil (--no-cache).
	Caches      *cache.Manager
	Images      *image.Store
	CacheBudget config.Budget
	ImageBudget config.Budget
	// Metrics, if set, counts the evictions.
	Metrics *Metrics
	Log     hclog.Logger

	mu   sync.Mutex // one sweep at a time
	kick chan struct{}
	once sync.Once
}

func (h *Housekeeper) kicks() chan struct{} {
	h.once.Do(func() { h.kick = make(chan struct{}, 1) })
	return h.kick
}

// Kick asks Run for a sweep soon, without waiting for it.
func (h *Housekeeper) Kick() {
	select {
	case h.kicks() <- struct{}{}:
	default: // one is already due
	}
}

// Run sweeps at every Kick and every interval until ctx ends.
func (h *Housekeeper) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.kicks():
		}
		if err := h.Sweep(ctx); err != nil && ctx.Err() == nil {
			h.log().Warn("disk budget sweep", "error", err)
		}
	}
}

func (h *Housekeeper) log() hclog.Logger {
	if h.Log == nil {
		return hclog.NewNullLogger()
	}
	return h.Log
}

// Sweep evicts caches, then images, until each store fits its budget
// given the filesystem's size and free space now.
func (h *Housekeeper) Sweep(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	if h.Caches != nil {
		errs = append(errs, h.sweepCaches(ctx))
	}
	if h.Images != nil {
		errs = append(errs, h.sweepImages(ctx))
	}
	return errors.Join(errs...)
}

func (h *Housekeeper) sweepCaches(ctx context.Context) error {
	total, avail, fsUsed, err := fsUse(h.Caches.Dir())
	if err != nil {
		return fmt.Errorf("cache budget: %w", err)
	}
	if !cachesMayExceed(h.CacheBudget, total, avail, fsUsed) {
		// Nothing to evict, whatever the sizes: List, which measures
		// the stale ones, is not needed.
		return nil
	}
	vols, err := h.Caches.List()
	if err != nil {
		return err
	}
	var used int64
	for _, v := range vols {
		used += v.Size
	}
	limit := h.CacheBudget.Effective(total, avail, used)
	if used <= limit {
		return nil
	}
	removed, err := h.Caches.Prune(ctx, limit)
	var freed int64
	for _, v := range removed {
		freed += v.Size
	}
	if len(removed) > 0 {
		h.log().Info("cache budget: evicted volumes", "volumes", len(removed), "freed", units.FormatSize(freed),
			"used", units.FormatSize(used-freed), "budget", units.FormatSize(limit))
	}
	h.Metrics.evicted("cache", len(removed), freed)
	if err != nil {
		return fmt.Errorf("cache budget: %w", err)
	}
	return nil
}

func (h *Housekeeper) sweepImages(ctx context.Context) error {
	total, avail, _, err := fsUse(h.Images.Dir())
	if err != nil {
		return fmt.Errorf("image budget: %w", err)
	}
	limit := h.ImageBudget.Limit.Of(total)
	if floor := h.ImageBudget.MinFree.Of(total); avail < floor {
		// Short of free space: measure the store to know how far
		// below its budget it must go.
		used, err := diskUsage(h.Images.Dir())
		if err != nil {
			return fmt.Errorf("image budget: %w", err)
		}
		limit = h.ImageBudget.Effective(total, avail, used)
	}
	// Prune reads 0 as no budget; 1 byte forgets every image not in use.
	res, err := h.Images.Prune(ctx, max(limit, 1))
	if res != nil {
		for _, ref := range res.Images {
			h.log().Info("image budget: evicted image", "image", ref, "budget", units.FormatSize(limit))
		}
		if res.Freed > 0 {
			h.log().Info("image budget: removed unused blobs and layers", "images", len(res.Images), "layers", res.Layers, "blobs", res.Blobs, "freed", units.FormatSize(res.Freed))
		}
		h.Metrics.evicted("image", len(res.Images), res.Freed)
	}
	if err != nil {
		return fmt.Errorf("image budget: %w", err)
	}
	return nil
}

// diskUsage is the bytes on disk under dir, hard links counted once.
func diskUsage(dir string) (int64, error) {
	seen := map[uint64]bool{}
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if st.Nlink > 1 {
				if seen[st.Ino] {
					return nil
				}
				seen[st.Ino] = true
			}
			n += st.Blocks * 512
		}
		return nil
	})
	return n, err
}
