package cache

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// diskSize is what the tree at dir uses on disk (blocks, hard links
// counted once), as measure counts it. It walks by directory descriptor:
// each entry is a fstatat of one name in its open parent, each directory
// opened from its parent with O_NOFOLLOW, so nothing resolves a path
// twice (a lstat of every full path costs twice as much on a deep tree)
// and a job that swaps a directory for a symbolic link meanwhile (a
// shared volume) gets an error, never a walk outside dir.
//
// The walk is spread over up to sizeWorkers goroutines, one per CPU: a
// builder's storage (~8000 entries) takes ~20 ms in one, on the way out
// of every job that used it. A worker hands a subdirectory to the others
// while fewer than sizeQueue wait, and walks it itself otherwise, so the
// descriptors open stay bounded by the queue and the tree's depth, not
// its width.
func diskSize(dir string) (int64, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return 0, fmt.Errorf("%s: %w", dir, err)
	}
	p := &sizePool{}
	p.cond = sync.NewCond(&p.mu)
	p.queue = []queuedDir{{fd, dir}}
	p.pending = 1
	n := min(runtime.NumCPU(), sizeWorkers)
	walks := make([]sizeWalk, n)
	var wg sync.WaitGroup
	for i := range walks {
		walks[i] = sizeWalk{pool: p, seen: map[[2]uint64]int64{}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			walks[i].work()
		}()
	}
	wg.Wait()
	if p.err != nil {
		return 0, p.err
	}
	// Hard links counted once over all workers.
	size := blocks(&st)
	if st.Nlink > 1 {
		walks[0].seen[[2]uint64{st.Dev, st.Ino}] = size
		size = 0
	}
	seen := map[[2]uint64]bool{}
	for _, w := range walks {
		size += w.size
		for in, b := range w.seen {
			if !seen[in] {
				seen[in] = true
				size += b
			}
		}
	}
	return size, nil
}

const (
	// sizeWorkers is the most goroutines one diskSize walks with.
	sizeWorkers = 4
	// sizeQueue is the most directories waiting for a worker.
	sizeQueue = 64
)

func blocks(st *unix.Stat_t) int64 { return st.Blocks * 512 }

type queuedDir struct {
	fd   int
	name string
}

// sizePool is the directories a diskSize walk has yet to read.
type sizePool struct {
	mu   sync.Mutex
	cond *sync.Cond
	// queue is the directories opened and not yet taken by a worker;
	// pending counts them and the ones being read.
	queue   []queuedDir
	pending int
	err     error
}

// take returns the next directory to read, waiting while other workers
// may still queue some; ok is false when the walk is over.
func (p *sizePool) take() (queuedDir, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.queue) == 0 && p.pending > 0 {
		p.cond.Wait()
	}
	if len(p.queue) == 0 {
		return queuedDir{}, false
	}
	d := p.queue[len(p.queue)-1]
	p.queue = p.queue[:len(p.queue)-1]
	return d, true
}

// offer queues d for any worker if the queue has room.
func (p *sizePool) offer(d queuedDir) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) >= sizeQueue {
		return false
	}
	p.queue = append(p.queue, d)
	p.pending++
	p.cond.Signal()
	return true
}

// done ends the reading of one taken directory, with its error if any:
// the first error stops the walk (the directories queued are closed).
func (p *sizePool) done(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending--
	if err != nil && p.err == nil {
		p.err = err
		for _, d := range p.queue {
			unix.Close(d.fd)
		}
		p.pending -= len(p.queue)
		p.queue = nil
	}
	if p.pending == 0 {
		p.cond.Broadcast()
	}
}

func (p *sizePool) failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err != nil
}

// sizeWalk is one worker's share of a diskSize walk.
type sizeWalk struct {
	pool *sizePool
	size int64
	seen map[[2]uint64]int64 // dev, inode of entries with more than one link: their blocks
}

func (w *sizeWalk) work() {
	for {
		d, ok := w.pool.take()
		if !ok {
			return
		}
		w.pool.done(w.dir(d.fd, d.name))
	}
}

func (w *sizeWalk) add(st *unix.Stat_t) {
	if st.Nlink > 1 {
		w.seen[[2]uint64{st.Dev, st.Ino}] = blocks(st)
		return
	}
	w.size += blocks(st)
}

// dir adds the entries of the directory open at fd (named name, for
// errors), and closes fd. A subdirectory goes to the pool if it has room,
// else this worker reads it now.
func (w *sizeWalk) dir(fd int, name string) error {
	d := os.NewFile(uintptr(fd), name)
	defer d.Close()
	if w.pool.failed() {
		return errors.New("walk stopped")
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("%s/%s: %w", name, n, err)
		}
		w.add(&st)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		cfd, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", name, n, err)
		}
		if w.pool.offer(queuedDir{cfd, name + "/" + n}) {
			continue
		}
		if err := w.dir(cfd, name+"/"+n); err != nil {
			return err
		}
	}
	return nil
}
