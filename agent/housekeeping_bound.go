package agent

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/agent/config"
)

// cachesMayExceed reports whether the caches could be over budget b on a
// filesystem of total bytes with avail available and fsUsed in use (its
// size less its free blocks, root's reserve included), whatever their
// sizes. Every volume's disk use is part of fsUsed (a volume's files are
// its own: a job cannot link a file across binds, EXDEV), so while free
// space is above the floor (the limit then does not depend on the
// caches' use) and fsUsed is within the limit, no sizes could put the
// caches over it, and a sweep need not measure the sizes releases left
// stale (cache.Volume.Release) to know it evicts nothing.
func cachesMayExceed(b config.Budget, total, avail, fsUsed int64) bool {
	if floor := b.MinFree.Of(total); floor > 0 && avail < floor {
		return true
	}
	return fsUsed > b.Limit.Of(total)
}

// fsUse is the size of the filesystem holding dir, the bytes that
// unprivileged users may still write to it, and the bytes in use: the
// size less the free blocks (root's reserve is free, not in use).
func fsUse(dir string) (total, avail, used int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Blocks) * st.Bsize, int64(st.Bavail) * st.Bsize, int64(st.Blocks-st.Bfree) * st.Bsize, nil
}
