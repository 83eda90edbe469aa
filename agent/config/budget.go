package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jobrun/jobrun/internal/units"
)

// Space is an amount of disk: a size in bytes, or a percentage of the
// filesystem that holds the state directory.
type Space struct {
	// Bytes, if above zero, is the size.
	Bytes int64
	// Percent (0 < Percent <= 100) is used when Bytes is zero.
	Percent float64
}

// Of is the space in bytes on a filesystem of total bytes.
func (s Space) Of(total int64) int64 {
	if s.Bytes > 0 {
		return s.Bytes
	}
	return int64(float64(total) * s.Percent / 100)
}

// String writes s as ParseSpace reads it.
func (s Space) String() string {
	if s.Bytes > 0 {
		return units.FormatSize(s.Bytes)
	}
	return strconv.FormatFloat(s.Percent, 'f', -1, 64) + "%"
}

// ParseSpace reads a size ("50GiB") or a percentage of the filesystem
// ("20%").
func ParseSpace(s string) (Space, error) {
	t := strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(t, "%"); ok {
		n, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || !(n > 0 && n <= 100) {
			return Space{}, fmt.Errorf("invalid percentage %q: want a number above 0 and at most 100, like \"20%%\"", s)
		}
		return Space{Percent: n}, nil
	}
	n, err := units.ParseSize(t)
	if err != nil {
		return Space{}, fmt.Errorf("%w, or a percentage of the filesystem like \"20%%\"", err)
	}
	return Space{Bytes: n}, nil
}

// Budget bounds what a store (the caches, the images) keeps on disk. The
// agent evicts the least recently used entries no job holds until the
// store fits in Limit and the filesystem has at least MinFree available.
type Budget struct {
	// Limit is the store's most size on disk.
	Limit Space
	// MinFree is the available space the filesystem keeps: when it has
	// less, the store shrinks below Limit by the difference.
	MinFree Space
}

// DefaultBudget is a store's budget when the config sets none: an agent
// left with it never fills its disk with caches or images. Each store
// keeps at most a fifth of the filesystem, and both give space back while
// less than a tenth of it is free.
func DefaultBudget() Budget {
	return Budget{Limit: Space{Percent: 20}, MinFree: Space{Percent: 10}}
}

// Effective is the most bytes the store may keep now, given the filesystem's
// total size, its available bytes and the store's use. It is at least 0.
func (b Budget) Effective(total, avail, used int64) int64 {
	limit := b.Limit.Of(total)
	if floor := b.MinFree.Of(total); floor > 0 && avail < floor {
		limit = min(limit, used-(floor-avail))
	}
	return max(limit, 0)
}

type storeSchema struct {
	Budget  string `hcl:"budget,optional"`
	MinFree string `hcl:"min_free,optional"`
}

func (s *storeSchema) budget(filename, block string, def Budget) (Budget, error) {
	b := def
	if s == nil {
		return b, nil
	}
	var err error
	if s.Budget != "" {
		if b.Limit, err = ParseSpace(s.Budget); err != nil {
			return b, fmt.Errorf("%s: %s: budget: %w", filename, block, err)
		}
	}
	if s.MinFree != "" {
		if b.MinFree, err = ParseSpace(s.MinFree); err != nil {
			return b, fmt.Errorf("%s: %s: min_free: %w", filename, block, err)
		}
	}
	return b, nil
}
