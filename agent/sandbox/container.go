package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jobrun/jobrun/agent/sandbox/internal/wire"
	"github.com/jobrun/jobrun/internal/lockfile"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// Container is a running job container: an init (the launcher) that
// starts the steps Exec asks for and reaps orphans. Its methods may be
// called concurrently.
type Container struct {
	rt      *Runtime
	spec    Spec
	files   string
	lock    *lockfile.Lock
	user    User
	bash    bool
	cfg     *configs.Config // what the starter gave libcontainer
	initPid int
	// pidfd is the init's; the starter, its parent, reaps it.
	pidfd *os.File
	cg    cgroups.Manager
	// ctl is the control socket to the launcher, the container's init,
	// which starts the steps.
	ctl *os.File

	mu        sync.Mutex
	pidsPeak  int64
	outputs   []*copier
	destroyed bool
}

// Process is one step to run in the container.
type Process struct {
	// Args is the command and its arguments; see Shell.
	Args []string
	// Env overrides the container's environment key by key.
	Env []string
	// Cwd defaults to the Spec's.
	Cwd string
	// User ("uid[:gid]" or "name[:group]") defaults to the Spec's.
	User string
	// Stdout and Stderr receive the output as it comes, in chunks as the
	// process writes them (no line framing, no timestamps: the caller's
	// writers add those). Each is written from one goroutine at a time.
	// If both are the same (comparable) writer, the process gets one pipe
	// for both, so their interleaving is exact; otherwise order holds
	// within each stream only. Nil discards. Writers are not used after
	// Exec returns: output of background processes that outlive the step
	// by more than half a second is dropped.
	Stdout, Stderr io.Writer
	// Stdin, if set, is the process's standard input (an interactive
	// shell, which in a building container stays in the job's user
	// namespace: see builder.go); nil means /dev/null.
	Stdin io.Reader
	// Timeout, if set, stops the step (and every process of the container
	// but init) after this long; Exit reports "timed out after ...".
	Timeout time.Duration
}

// Usage is a container's resource use so far, read through libcontainer's
// cgroup manager (cgroup v1 or v2).
type Usage struct {
	// CPU is the CPU time used by all its processes.
	CPU time.Duration
	// MemoryPeak is the highest memory use in bytes.
	MemoryPeak int64
	// PidsPeak is the highest number of processes (and threads) seen,
	// sampled while steps run, or the limit if a fork hit it.
	PidsPeak int64
}

// ID returns the container's id.
func (c *Container) ID() string { return c.spec.ID }

// Pid is the host pid of the container's init, for `nsenter --target`.
func (c *Container) Pid() int { return c.initPid }

// Shell returns the command that runs script in the image's shell: bash
// with -eo pipefail if the image has /bin/bash, else /bin/sh -c.
func (c *Container) Shell(script string) []string {
	if c.bash {
		return []string{"/bin/bash", "-eo", "pipefail", "-c", script}
	}
	return []string{"/bin/sh", "-c", script}
}

// Exec runs p in the container and waits for it to end. The container's
// init starts p as its child, so p has the container's namespaces,
// cgroup, seccomp filter, no_new_privs and capability bounding set. When
// ctx is done first, every process in the container except init gets
// SIGTERM, then after the Spec's StopGrace SIGKILL (with the cgroup
// frozen, so nothing forks away), and Exit says "timed out" or
// "cancelled". The error is for failures to run p at all (no such
// command, say); how p ended is in Exit.
func (c *Container) Exec(ctx context.Context, p Process) (*Exit, error) {
	if len(p.Args) == 0 {
		return nil, fmt.Errorf("exec in %s: no command", c.spec.ID)
	}
	if p.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, p.Timeout, Timeout(p.Timeout))
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return c.stopped(ctx, &Exit{Code: -1}), nil
	}
	proc, err := c.process(p)
	if err != nil {
		return nil, err
	}
	oomBefore, _ := c.cg.OOMKillCount()
	pidsBefore := c.pidsMaxEvents()

	stdin, closeStdin, err := openStdin(p.Stdin)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", c.spec.ID, err)
	}
	defer closeStdin()
	outs, err := c.openOutputs(p)
	if err != nil {
		return nil, err
	}
	stderr := outs[0].w
	if len(outs) > 1 {
		stderr = outs[1].w
	}

	begin := time.Now()
	st, err := c.launch(proc, stdin, outs[0].w, stderr)
	if err != nil {
		for _, o := range outs {
			o.close()
		}
		return nil, fmt.Errorf("exec %q in %s: %w", p.Args[0], c.spec.ID, err)
	}
	for _, o := range outs {
		o.start()
	}

	type result struct {
		ws  unix.WaitStatus
		err error
	}
	waited := make(chan result, 1)
	go func() {
		ws, err := st.wait()
		waited <- result{ws, err}
	}()
	sampleDone := make(chan struct{})
	go c.samplePids(sampleDone)

	var r result
	stopped := false
	select {
	case r = <-waited:
	case <-ctx.Done():
		stopped = true
		if err := c.Kill(c.spec.StopGrace); err != nil {
			c.rt.log.Warn("stop container processes", "id", c.spec.ID, "error", err)
		}
		r = <-waited
	}
	close(sampleDone)
	for _, o := range outs {
		o.finish()
	}

	exit := &Exit{Duration: time.Since(begin), MemoryLimit: c.spec.Resources.Memory, PidsMax: c.spec.Resources.Pids}
	exit.Code, exit.Signal = -1, 0
	switch {
	case r.err != nil && c.isDestroyed():
		// Destroy killed the launcher and with it every process: how
		// a service's main process ends, the expected path, not news.
		exit.Signal = unix.SIGKILL
		c.rt.log.Debug("process ended with its container", "id", c.spec.ID, "error", r.err)
	case r.err != nil:
		c.rt.log.Warn("step outcome unknown", "id", c.spec.ID, "error", r.err)
	default:
		exit.Code, exit.Signal = status(r.ws)
	}
	if !exit.Success() {
		if n, err := c.cg.OOMKillCount(); err == nil && n > oomBefore {
			exit.OOMKilled = true
		}
		if c.pidsMaxEvents() > pidsBefore {
			exit.PidsLimit = true
		}
	}
	if stopped {
		c.stopped(ctx, exit)
	}
	return exit, nil
}

// openStdin returns the file to give a step as stdin: /dev/null for nil,
// r itself if it is a file, else a pipe fed from r until r ends or the
// step's stdin is closed. The returned func releases it after the step.
func openStdin(r io.Reader) (*os.File, func(), error) {
	switch r := r.(type) {
	case nil:
		f, err := os.Open(os.DevNull)
		if err != nil {
			return nil, nil, fmt.Errorf("stdin: %w", err)
		}
		return f, func() { f.Close() }, nil
	case *os.File:
		return r, func() {}, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("stdin pipe: %w", err)
	}
	go func() {
		_, _ = io.Copy(pw, r)
		pw.Close()
	}()
	// Our copy of the read end goes once the launcher has its own; the
	// write end closes when r ends, or fails once the step is gone.
	return pr, func() { pr.Close() }, nil
}

// openOutputs makes the pipes for p's output, whose write ends the step
// gets: one pipe if stdout and stderr go to the same writer, else two.
func (c *Container) openOutputs(p Process) ([]*copier, error) {
	stdout, err := c.newCopier(p.Stdout)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", c.spec.ID, err)
	}
	if sameWriter(p.Stdout, p.Stderr) {
		return []*copier{stdout}, nil
	}
	stderr, err := c.newCopier(p.Stderr)
	if err != nil {
		stdout.close()
		return nil, fmt.Errorf("exec in %s: %w", c.spec.ID, err)
	}
	return []*copier{stdout, stderr}, nil
}

// status returns the exit code (-1 if a signal ended the process) and the
// signal of a wait status.
func status(ws unix.WaitStatus) (int, syscall.Signal) {
	switch {
	case ws.Exited():
		return ws.ExitStatus(), 0
	case ws.Signaled():
		return -1, ws.Signal()
	}
	return -1, 0
}

// sameWriter reports whether a and b are the same writer, in which case
// the step gets one pipe for both streams and their order is kept exactly,
// as with 2>&1. Writers of uncomparable types count as different.
func sameWriter(a, b io.Writer) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	return ta == tb && ta.Comparable() && a == b
}

// stopped marks exit as timed out or cancelled, by ctx's error.
func (c *Container) stopped(ctx context.Context, exit *Exit) *Exit {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		exit.TimedOut = true
		var t Timeout
		if errors.As(context.Cause(ctx), &t) {
			exit.Timeout = time.Duration(t)
		}
	} else {
		exit.Cancelled = true
	}
	return exit
}

// process builds the launcher's request for p: its user resolved in the
// rootfs, its environment merged with the container's, its directory.
func (c *Container) process(p Process) (*wire.Proc, error) {
	u := c.user
	if p.User != "" {
		var err error
		if u, err = ResolveUser(c.spec.Rootfs, p.User); err != nil {
			return nil, fmt.Errorf("exec in %s: %w", c.spec.ID, err)
		}
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = c.spec.Cwd
	}
	if !filepath.IsAbs(cwd) {
		return nil, fmt.Errorf("exec in %s: working directory %q is not absolute", c.spec.ID, cwd)
	}
	env, err := mergeEnv(c.spec.Env, p.Env)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", c.spec.ID, err)
	}
	env = setDefault(env, "PATH", defaultPath)
	env = setDefault(env, "HOME", u.Home)
	env = setDefault(env, "HOSTNAME", c.spec.Hostname)
	groups := make([]uint32, len(u.Groups))
	for i, g := range u.Groups {
		groups[i] = uint32(g)
	}
	// The capabilities follow from the user, as with Docker: root keeps
	// the container's set; any other user holds none (setuid away from
	// 0 clears them, and no_new_privs keeps execve from granting any)
	// but has the same bounding set, so a set-uid binary in the image
	// works as far as no_new_privs lets it: not at all without a user
	// namespace, up to the range's root in one.
	//
	// A building container's root steps start as root of a user
	// namespace of their own, nested in the job's (builder.go), but for
	// an interactive shell (Stdin set), which stays in the job's
	// namespaces to look at them.
	return &wire.Proc{
		Path:   p.Args[0],
		Args:   p.Args,
		Env:    env,
		Dir:    cwd,
		UID:    uint32(u.UID),
		GID:    uint32(u.GID),
		Groups: groups,
		Nest:   c.spec.Builder && u.UID == 0 && p.Stdin == nil,
	}, nil
}

func mergeEnv(base, over []string) ([]string, error) {
	env := slices.Clone(base)
	for _, kv := range over {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("environment entry %q is not KEY=value", kv)
		}
		env = slices.DeleteFunc(env, func(e string) bool { return strings.HasPrefix(e, k+"=") })
		env = append(env, kv)
	}
	return env, nil
}

func setDefault(env []string, key, value string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return env
		}
	}
	return append(env, key+"="+value)
}

// samplePids records the container's process count until done closes.
// A fork bomb reaches the limit quickly, so sampling often matters less
// than the pids.events counter, which Stats also consults.
func (c *Container) samplePids(done <-chan struct{}) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	// No sample at once: it would see the step being forked, and take
	// CPU from it.
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if pids, err := c.cg.GetAllPids(); err == nil {
			c.mu.Lock()
			c.pidsPeak = max(c.pidsPeak, int64(len(pids)))
			c.mu.Unlock()
		}
	}
}

// pidsMaxEvents returns how often a fork failed on the pids limit
// ("max" in pids.events, the same file in cgroup v1 and v2).
func (c *Container) pidsMaxEvents() uint64 {
	dir := c.cg.Path("pids")
	if dir == "" {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(dir, "pids.events"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "max "); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// Stats returns the container's resource use so far.
func (c *Container) Stats() (Usage, error) {
	cs, err := c.cg.GetStats()
	if err != nil {
		return Usage{}, fmt.Errorf("stats of %s: %w", c.spec.ID, err)
	}
	u := Usage{
		CPU:        time.Duration(cs.CpuStats.CpuUsage.TotalUsage),
		MemoryPeak: int64(cs.MemoryStats.Usage.MaxUsage),
	}
	c.mu.Lock()
	u.PidsPeak = max(c.pidsPeak, int64(cs.PidsStats.Current))
	c.mu.Unlock()
	if c.spec.Resources.Pids > 0 && c.pidsMaxEvents() > 0 {
		u.PidsPeak = c.spec.Resources.Pids
	}
	return u, nil
}

// Kill stops every process in the container except its init:
// SIGTERM, up to grace for them to exit, then SIGKILL with the cgroup
// frozen so that nothing forks away between listing and killing.
// Processes that left the step's process tree (setsid, double forks,
// daemons) are in the cgroup all the same.
func (c *Container) Kill(grace time.Duration) error {
	return killCgroup(context.Background(), c.cg, grace, c.initPid)
}

// killCgroup signals every process in cg but those in keep: SIGTERM, then
// after grace SIGKILL, each time with the cgroup frozen. It returns once
// only the kept processes are left, or fails after a while.
func killCgroup(ctx context.Context, cg cgroups.Manager, grace time.Duration, keep ...int) error {
	if !cg.Exists() {
		return nil
	}
	if grace > 0 {
		if err := signalFrozen(cg, unix.SIGTERM, keep); err != nil {
			return err
		}
		if waitOnly(ctx, cg, keep, grace) {
			return nil
		}
	}
	if err := signalFrozen(cg, unix.SIGKILL, keep); err != nil {
		return err
	}
	if !waitOnly(ctx, cg, keep, 10*time.Second) {
		pids, _ := cg.GetAllPids()
		return fmt.Errorf("processes %v survived SIGKILL", pids)
	}
	return nil
}

// signalFrozen freezes cg, sends sig to every process in it but keep, and
// thaws it. While frozen no process can fork or exit, so no pid is reused
// between listing and signalling.
func signalFrozen(cg cgroups.Manager, sig unix.Signal, keep []int) error {
	if err := cg.Freeze(cgroups.Frozen); err != nil {
		return fmt.Errorf("freeze: %w", err)
	}
	pids, err := cg.GetAllPids()
	if err == nil {
		for _, pid := range pids {
			if !slices.Contains(keep, pid) {
				if e := unix.Kill(pid, sig); e != nil && !errors.Is(e, unix.ESRCH) {
					err = errors.Join(err, fmt.Errorf("signal %d: %w", pid, e))
				}
			}
		}
	}
	if terr := cg.Freeze(cgroups.Thawed); terr != nil {
		return errors.Join(err, fmt.Errorf("thaw: %w", terr))
	}
	return err
}

// waitOnly waits up to d for cg to hold only the processes in keep.
func waitOnly(ctx context.Context, cg cgroups.Manager, keep []int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		pids, err := cg.GetAllPids()
		if err != nil && (errors.Is(err, os.ErrNotExist) || !cg.Exists()) {
			return true
		}
		if !slices.ContainsFunc(pids, func(p int) bool { return !slices.Contains(keep, p) }) {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(delay)
	}
}

// Destroy kills every process in the container and removes it: its
// libcontainer state, its cgroup in every hierarchy, its mounts (they live
// in its mount namespace, which dies with it) and its files. Calling it
// again does nothing.
func (c *Container) Destroy() error {
	c.mu.Lock()
	if c.destroyed {
		c.mu.Unlock()
		return nil
	}
	c.destroyed = true
	outs := c.outputs
	c.outputs = nil
	c.mu.Unlock()

	var errs []error
	switch {
	case c.pidfd != nil && c.cg != nil && !c.spec.Privileged:
		// Killing PID 1 of a pid namespace kills every process in it
		// at once; nothing can fork out of a namespace, so no freeze.
		if err := c.killInit(); err != nil {
			errs = append(errs, err)
		}
		if !waitOnly(context.Background(), c.cg, nil, 10*time.Second) {
			errs = append(errs, errors.New("processes left in the cgroup after the pid namespace died"))
		}
	case c.cg != nil:
		if err := killCgroup(context.Background(), c.cg, 0); err != nil {
			errs = append(errs, err)
		}
		if c.pidfd != nil && !waitPidfd(c.pidfd, 10*time.Second) {
			errs = append(errs, errors.New("init survived SIGKILL"))
		}
	case c.pidfd != nil:
		// Start failed after the init ran, before the cgroup manager.
		if err := c.killInit(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.pidfd != nil {
		c.pidfd.Close()
	}
	// What libcontainer's Destroy does for a stopped container (no
	// hooks here): its cgroups and its state.
	if c.cg != nil {
		if err := c.cg.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup: %w", err))
		}
		if err := os.RemoveAll(filepath.Join(c.rt.runc, c.spec.ID)); err != nil {
			errs = append(errs, err)
		}
	}
	for _, o := range outs {
		o.close()
	}
	if c.ctl != nil {
		c.ctl.Close()
	}
	if err := unbindRoot(c.files); err != nil {
		// Never recurse into a root still bound there.
		errs = append(errs, err)
	} else if err := os.RemoveAll(c.files); err != nil {
		errs = append(errs, err)
	}
	if c.lock != nil {
		c.lock.Release()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("destroy container %s: %w", c.spec.ID, err)
	}
	return nil
}

// isDestroyed reports whether Destroy has begun.
func (c *Container) isDestroyed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.destroyed
}

// killInit kills the container's init and waits for it to exit.
func (c *Container) killInit() error {
	if err := unix.PidfdSendSignal(int(c.pidfd.Fd()), unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill init: %w", err)
	}
	if !waitPidfd(c.pidfd, 10*time.Second) {
		return errors.New("init survived SIGKILL")
	}
	return nil
}

// chownMounts gives the workspace and the mounts marked Chown to the
// container's user: to its container ids without a user namespace and
// for idmapped mounts (the mapping shifts them), to its host ids in the
// job's range for what was built for the range (cfg's mapping).
func (c *Container) chownMounts(cfg *configs.Config) error {
	type dir struct {
		path  string
		idmap bool
	}
	var dirs []dir
	if c.spec.Workspace != "" {
		dirs = append(dirs, dir{c.spec.Workspace, c.spec.WorkspaceIDMap})
	}
	for _, m := range c.spec.Mounts {
		if m.Chown {
			dirs = append(dirs, dir{m.Source, m.IDMap})
		}
	}
	for _, d := range dirs {
		uid, gid := c.user.UID, c.user.GID
		if c.spec.UserNS != "" && !d.idmap {
			var err error
			if uid, err = cfg.HostUID(uid); err == nil {
				gid, err = cfg.HostGID(gid)
			}
			if err != nil {
				return fmt.Errorf("chown %s: user %d:%d in the job's range: %w", d.path, c.user.UID, c.user.GID, err)
			}
		}
		if err := Chown(d.path, uid, gid); err != nil {
			return err
		}
	}
	return nil
}
