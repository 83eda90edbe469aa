package sandbox

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/opencontainers/cgroups"
)

// Moving a process into a cgroup (libcontainer does it once per container,
// before the container's namespaces exist) takes the kernel's global
// cgroup_threadgroup_rwsem for writing. That is a per-CPU semaphore: the
// first writer after a quiet spell waits for an RCU grace period, 4 to 15
// ms on this project's test machine, the writers after it within about
// one more grace period do not (a Go probe measured 7 ms at the median
// for a first move, 0.1 ms for a move of the current thread, which
// takes no global lock). The wait is the same on cgroup v1 and v2; only
// hosts that mount cgroups with favordynmods skip it.
//
// So while a container is being started, a warmer moves this process into
// the cgroup it is already in (which changes nothing) every
// couple of milliseconds: the first move pays the grace period while the
// start is still preparing the container's configuration and the starter
// is forking, and the container's own move, when it comes, finds the
// semaphore ready.

// warmEvery is how often the warmer moves this process while starts are
// under way: shorter than a grace period, so the semaphore never returns
// to its quiet state in between.
const warmEvery = 2 * time.Millisecond

// warmer keeps the cgroup attach path warm while starts are under way.
type warmer struct {
	log   hclog.Logger
	procs string // the cgroup.procs file of this process's own cgroup
	pid   []byte
	mu    sync.Mutex
	users int
	off   bool
	moves atomic.Int64 // moves made, for tests
}

// newWarmer returns a warmer for this process's cgroup, or one that does
// nothing if that cannot be found.
func newWarmer(log hclog.Logger) *warmer {
	w := &warmer{log: log, pid: []byte(strconv.Itoa(os.Getpid()))}
	dir, err := ownCgroup()
	if err != nil {
		log.Debug("no cgroup attach warm-up", "error", err)
		w.off = true
		return w
	}
	w.procs = filepath.Join(dir, "cgroup.procs")
	return w
}

// ownCgroup returns the directory of this process's cgroup: on cgroup v2
// its one cgroup, on v1 the one in the pids hierarchy (any hierarchy
// would do: the semaphore is global).
func ownCgroup() (string, error) {
	if !cgroups.IsCgroup2UnifiedMode() {
		return cgroups.GetOwnCgroupPath("pids")
	}
	m, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	return filepath.Join("/sys/fs/cgroup", m[""]), nil
}

// begin starts warming if no other start is; the returned func ends this
// start's part in it (calls after the first do nothing).
func (w *warmer) begin() (end func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.off {
		return func() {}
	}
	w.users++
	if w.users == 1 {
		go w.run()
	}
	return sync.OnceFunc(func() {
		w.mu.Lock()
		w.users--
		w.mu.Unlock()
	})
}

// run moves this process into its own cgroup until no start needs it.
func (w *warmer) run() {
	for {
		w.mu.Lock()
		if w.users == 0 || w.off {
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		if err := os.WriteFile(w.procs, w.pid, 0); err != nil {
			// Not allowed here (a cgroup v2 with controllers
			// enabled below it, a read-only cgroupfs): starts are
			// only slower.
			w.log.Debug("cgroup attach warm-up off", "error", err)
			w.mu.Lock()
			w.off = true
			w.mu.Unlock()
			return
		}
		w.moves.Add(1)
		time.Sleep(warmEvery)
	}
}
