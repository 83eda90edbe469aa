package sandbox

import (
	"cmp"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jobrun/jobrun/agent/sandbox/internal/wire"
	"github.com/jobrun/jobrun/internal/lockfile"
	"github.com/jobrun/jobrun/internal/mount"
	"github.com/jobrun/jobrun/internal/rootless"
	"github.com/opencontainers/cgroups"
	// Registers the devices cgroup driver; without it device rules fail.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Runtime starts containers. Their runtime state lives in memory, in the
// directory RunDir gives for the Runtime's state dir:
//
//	<run>/runc/<id>/          libcontainer's state of a container
//	<run>/containers/<id>/    our files: lock, hosts, hostname, resolv.conf
//	<run>/ns/<id>/            a job's namespaces (Namespaces), ns/<id>.lock
//
// Several processes may share a state dir (and so a run dir): each live
// container holds the flock on containers/<id>/lock, and Cleanup removes
// only containers whose lock is free.
type Runtime struct {
	dir      string
	run      string
	runc     string
	files    string
	launcher string
	log      hclog.Logger
	starter  *spawner
	// cgroups is the cgroup jobs' cgroups go under (cgroupBase).
	cgroups string
	// users is this Runtime's shared hold on its run dir (usersFile).
	users   *lockfile.Lock
	warm    *warmer
	filters *filterCache
	// mappings are the id mappings of the user namespaces NewNamespaces
	// made and has not closed, by their UserPath.
	mappings sync.Map
	// seccompInInit leaves compiling the seccomp filter to each
	// container's setup process, as libcontainer does by itself;
	// waitFilters makes Start wait for a filter being compiled instead
	// (tests compare the two).
	seccompInInit, waitFilters bool
	// rootless: this process is root of a user namespace of an
	// unprivileged user's, not the host's root (rootless.go), and
	// rlCgroups what it may do with cgroups (rootless_cgroup.go).
	rootless  bool
	rlCgroups rootlessCgroups
	// orphans are the state dirs of the dead run dirs the last Cleanup
	// swept (OrphanedStateDirs).
	orphansMu sync.Mutex
	orphans   []string
}

// New returns a Runtime for stateDir, which it creates, and starts getting
// its starter ready (jobrun-starter, found next to the running binary or
// on PATH) in the background. Close stops it.
func New(stateDir string, log hclog.Logger) (_ *Runtime, err error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	// Without seccomp support every start would fail deep in
	// libcontainer; say what is wrong up front.
	if major, minor, micro := seccomp.Version(); major == 0 && minor == 0 && micro == 0 {
		return nil, errors.New("sandbox: built without seccomp support: build with cgo and -tags seccomp (libseccomp-dev)")
	}
	dir, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("sandbox state dir %s: %w", stateDir, err)
	}
	run, err := RunDir(dir)
	if err != nil {
		return nil, err
	}
	rt := &Runtime{
		dir:   dir,
		run:   run,
		runc:  filepath.Join(run, "runc"),
		files: filepath.Join(run, "containers"),
		log:   log,
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox state dir: %w", err)
	}
	if err := makeRunDir(run); err != nil {
		return nil, err
	}
	// Held until Close: another process's Cleanup leaves this run dir to
	// this Runtime's (see sweepRunDirs).
	if rt.users, err = lockfile.AcquireShared(context.Background(), filepath.Join(run, usersFile)); err != nil {
		return nil, fmt.Errorf("sandbox runtime dir: %w", err)
	}
	defer func() {
		if err != nil {
			rt.users.Release()
		}
	}()
	if err = writeNote(run, dir); err != nil {
		return nil, err
	}
	for _, d := range []string{rt.runc, rt.files} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("sandbox runtime dir: %w", err)
		}
	}
	// The way to a container's files (hosts, hostname, resolv.conf)
	// is traversable, never listable, by a job's range (see Start).
	if err := os.Chmod(rt.files, 0o711); err != nil {
		return nil, fmt.Errorf("sandbox runtime dir: %w", err)
	}
	// Before the starter and the warmer: on a delegated cgroup v2
	// subtree this process moves into its leaf, and they follow it.
	rt.rootless = rootless.InUserNS()
	if rt.rootless {
		if rt.rlCgroups, err = rootlessCgroupBase(); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
		rt.cgroups = cmp.Or(rt.rlCgroups.base, "/")
		// The filter cache reads compiled filters back with ptrace,
		// which needs the host's CAP_SYS_ADMIN.
		rt.seccompInInit = true
	} else if rt.cgroups, err = cgroupBase(log); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if rt.launcher, err = findHelper(launcherName, true); err != nil {
		return nil, err
	}
	starterPath, err := findHelper(starterName, false)
	if err != nil {
		return nil, err
	}
	rt.filters = newFilterCache(starterPath, log)
	if !rt.seccompInInit {
		rt.filters.store = newFilterStore(dir, starterPath)
	}
	// Compile the default profiles' seccomp filters (native only, and
	// with the 32-bit tables that jobs get) while the first job gets its
	// image and workspace ready.
	for _, compat := range []bool{false, true} {
		if rt.seccompInInit {
			break
		}
		if cfg, err := defaultSeccomp(rt.launcher, compat); err == nil {
			rt.filters.filter(cfg, false)
		}
	}
	rt.warm = newWarmer(log)
	rt.starter = newSpawner(starterPath)
	// Get the starter ready now rather than at the first start.
	rt.starter.prepare()
	return rt, nil
}

// PrepareBuilder compiles a building container's seccomp filter
// (Spec.Builder) in the background, as New does the default profiles':
// without it the first building container of this Runtime has
// libcontainer compile its filter in its setup (~15 ms more to start),
// which is every one of `jobrun local`'s, a process per run. Callers that
// will start one call it as early as they know.
func (rt *Runtime) PrepareBuilder() {
	if rt.seccompInInit {
		return
	}
	if cfg, err := builderSeccompConfig(rt.launcher); err == nil {
		rt.filters.filter(cfg, false)
	} else {
		rt.log.Debug("no builder seccomp profile to compile ahead", "error", err)
	}
}

// Ready waits until the Runtime's starter is ready to start containers
// (Start waits for it too) and says why if it cannot be: a long-lived
// agent checks this before it takes any job.
func (rt *Runtime) Ready() error {
	_, err := rt.starter.get()
	return err
}

// Close stops the Runtime's starter. Containers still running are killed
// with it (destroy them first); Start fails from then on. The run dir goes
// too unless another process's containers are in it.
func (rt *Runtime) Close() error {
	rt.starter.close()
	rt.users.Release()
	removeRunDir(rt.run)
	return nil
}

// findHelper returns the helper binary name (the launcher or the starter):
// next to the running binary (where `make build` and an install put it),
// else on PATH. A static one must be: the launcher runs in any image.
func findHelper(name string, static bool) (string, error) {
	check := func(p string) (string, error) {
		if static {
			return p, checkStatic(p)
		}
		return p, nil
	}
	var tried []string
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if _, err := os.Stat(p); err == nil {
			return check(p)
		}
		tried = append(tried, p)
	}
	if p, err := exec.LookPath(name); err == nil {
		return check(p)
	}
	tried = append(tried, "$PATH")
	return "", fmt.Errorf("no %s in %v: build it next to jobrun (`make build`, or scripts/helpers.sh DIR)", name, tried)
}

func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", path)
		}
	}
	return nil
}

// Start creates the container described by s and starts its init. The
// returned Container runs nothing else until Exec; it must be destroyed
// with Destroy. On error nothing is left behind.
func (rt *Runtime) Start(ctx context.Context, s Spec) (_ *Container, err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	begin := time.Now()
	// From here to the init's start; see warm.go.
	endWarm := rt.warm.begin()
	defer endWarm()
	c := &Container{rt: rt, spec: s, files: filepath.Join(rt.files, s.ID)}
	if c.lock, err = lockfile.TryAcquire(filepath.Join(c.files, "lock")); err != nil {
		return nil, fmt.Errorf("start container %s: id in use: %w", s.ID, err)
	}
	defer func() {
		if err != nil {
			if derr := c.Destroy(); derr != nil {
				rt.log.Error("clean up after failed start", "id", s.ID, "error", derr)
			}
		}
	}()
	if c.user, err = ResolveUser(s.Rootfs, s.User); err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	if err := writeEtc(c.files, &s); err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	if len(s.CACerts) > 0 {
		if s.caTargets, err = writeCABundle(c.files, s.Rootfs, s.CACerts, s.CABundles...); err != nil {
			return nil, fmt.Errorf("start container %s: %w", s.ID, err)
		}
		c.spec.caTargets = s.caTargets
	}
	spec, err := ociSpec(&s, rt.cgroups, c.files, rt.launcher)
	if err != nil {
		return nil, err
	}
	if s.UserNS != "" {
		// libcontainer reaches the root from inside the namespace: by
		// a path the range may traverse, whatever the state dir's.
		if spec.Root.Path, err = bindRoot(s.Rootfs, c.files); err != nil {
			return nil, fmt.Errorf("start container %s: %w", s.ID, err)
		}
	}
	if rt.rootless {
		rt.rlCgroups.rootlessSpec(spec)
	}
	fix := rt.knownMapping(spec, s.UserNS)
	cfg, err := libcontainerConfig(&s, spec)
	if err != nil {
		return nil, err
	}
	if rt.rootless {
		rootlessConfig(cfg)
	}
	fix(cfg)
	// Host ids of the container's root: in a user namespace the range's
	// first, which must own what the container's root writes.
	rootUID, rootGID := 0, 0
	if s.UserNS != "" {
		if rootUID, err = cfg.HostRootUID(); err == nil {
			rootGID, err = cfg.HostRootGID()
		}
		if err != nil {
			return nil, fmt.Errorf("start container %s: user namespace %s: %w", s.ID, s.UserNS, err)
		}
		if err := chownEtc(c.files, rootUID, rootGID); err != nil {
			return nil, fmt.Errorf("start container %s: %w", s.ID, err)
		}
		// The files dir, with the root bound in it, is the range's
		// root's to traverse (libcontainer binds from inside the
		// namespace), nobody else's: not another range's, not a host
		// user's.
		if err := os.Chown(c.files, rootUID, rootGID); err != nil {
			return nil, fmt.Errorf("start container %s: %w", s.ID, err)
		}
	}
	if err := c.chownMounts(cfg); err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	premakeMountpoints(spec, rootUID, rootGID)
	filter := &wire.Filter{}
	if cfg.Seccomp != nil && !rt.seccompInInit {
		// The launcher loads the compiled filter before it starts any
		// step; see seccomp.go. Until it is compiled, and if it cannot
		// be, libcontainer compiles it.
		if f := rt.filters.filter(cfg.Seccomp, rt.waitFilters); f != nil {
			filter, cfg.Seccomp = f, nil
			if s.UserNS != "" {
				// Without no_new_privs (a user namespace) loading a
				// filter needs CAP_SYS_ADMIN: the launcher gets it in
				// the job's namespace for that, and drops it from
				// every set, the bounding set included, before any
				// step (TestUsernsStepsNeverHoldSysAdmin). The seccomp
				// profile was made without it.
				cfg.Capabilities = withSysAdmin(cfg.Capabilities)
			}
		}
	}
	c.cfg = cfg
	// The same cgroups as the starter's libcontainer makes from cfg;
	// from here on Destroy removes them, and the state dir, whatever the
	// starter got to.
	if rt.rootless && rt.rlCgroups.base == "" {
		c.cg = &pidnsGroup{c: c}
	} else if c.cg, err = manager.New(cfg.Cgroups); err != nil {
		return nil, fmt.Errorf("start container %s: cgroup manager: %w", s.ID, err)
	}
	// The launcher's control socket, its fd 3.
	ctl, theirs, err := socketPair(unix.SOCK_SEQPACKET, "launcher-control")
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	c.ctl = ctl
	c.initPid, c.pidfd, err = rt.startInit(ctx, s.ID, cfg, theirs)
	endWarm()
	theirs.Close()
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	c.bash = hasFile(s.Rootfs, "/bin/bash")
	if err := setupLauncher(ctx, ctl, filter); err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.ID, err)
	}
	rt.log.Debug("container started", "id", s.ID, "init_pid", c.initPid, "took", time.Since(begin))
	return c, nil
}

// premakeMountpoints creates the missing bind mount points of spec in its
// rootfs. libcontainer would create them too, but with O_EXCL, so two
// containers starting at once on the same rootfs (not the usual per-job
// snapshot, but a shared directory) race and one fails. Best effort: a
// path through a symbolic link or another file system is left to
// libcontainer's own careful handling, and so are mount points in the
// container's /dev, a tmpfs of its own. Existing ones are not opened for
// writing, which would copy them up in an overlay. What it makes is owned
// by uid:gid, the host ids of the container's root.
func premakeMountpoints(spec *specs.Spec, uid, gid int) {
	root, err := unix.Open(spec.Root.Path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(root)
	for _, m := range spec.Mounts {
		if m.Type != "bind" {
			continue
		}
		st, err := os.Stat(m.Source)
		if err != nil {
			continue
		}
		rel := strings.TrimPrefix(filepath.Clean(m.Destination), "/")
		if strings.HasPrefix(rel, "dev/") {
			continue
		}
		dir, name := filepath.Split(rel)
		dfd, err := mkdirAllIn(root, dir, uid, gid)
		if err != nil {
			continue
		}
		var have unix.Stat_t
		switch {
		case unix.Fstatat(dfd, name, &have, unix.AT_SYMLINK_NOFOLLOW) == nil:
		case st.IsDir():
			if unix.Mkdirat(dfd, name, 0o755) == nil && uid != 0 {
				_ = unix.Fchownat(dfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
			}
		default:
			if fd, err := unix.Openat(dfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644); err == nil {
				if uid != 0 {
					_ = unix.Fchown(fd, uid, gid)
				}
				unix.Close(fd)
			}
		}
		unix.Close(dfd)
	}
}

// mkdirAllIn creates the directory path rel below the directory open at
// root, refusing symbolic links and mount crossings, and returns it open.
// Directories it makes are owned by uid:gid.
func mkdirAllIn(root int, rel string, uid, gid int) (int, error) {
	fd, err := unix.Dup(root)
	if err != nil {
		return -1, err
	}
	for _, c := range strings.Split(strings.Trim(rel, "/"), "/") {
		if c == "" {
			continue
		}
		err := unix.Mkdirat(fd, c, 0o755)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(fd)
			return -1, err
		}
		if err == nil && uid != 0 {
			if err := unix.Fchownat(fd, c, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				unix.Close(fd)
				return -1, err
			}
		}
		next, err := unix.Openat2(fd, c, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV,
		})
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// writeEtc writes the container's /etc/hosts, /etc/hostname and
// /etc/resolv.conf into dir.
func writeEtc(dir string, s *Spec) error {
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + s.Hostname + "\n"
	resolv := []byte{}
	if s.Network == "host" {
		if b, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts = string(b)
		}
		b, err := os.ReadFile("/etc/resolv.conf")
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("read host resolv.conf: %w", err)
		}
		resolv = b
	}
	for _, h := range s.Hosts {
		hosts += h + "\n"
	}
	if s.ResolvConf != "" {
		resolv = []byte(s.ResolvConf)
	}
	for name, data := range map[string][]byte{
		"hosts":       []byte(hosts),
		"hostname":    []byte(s.Hostname + "\n"),
		"resolv.conf": resolv,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// bindRoot binds the directory src (a container's rootfs) at rootfs in
// files, the container's files dir, and returns that path: the way to it
// is traversable by a job's range (see makeRunDir), where the way to a
// snapshot in the state dir may not be (a state dir under a 0700 home).
func bindRoot(src, files string) (string, error) {
	p := filepath.Join(files, "rootfs")
	if err := os.Mkdir(p, 0o755); err != nil {
		return "", fmt.Errorf("bind rootfs: %w", err)
	}
	if err := unix.Mount(src, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		os.Remove(p)
		return "", fmt.Errorf("bind rootfs %s: %w", src, err)
	}
	// No copy of it in the mount namespaces that share /run's.
	if err := unix.Mount("", p, "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return "", errors.Join(fmt.Errorf("bind rootfs %s: make private: %w", src, err), unbindRoot(files))
	}
	return p, nil
}

// unbindRoot undoes bindRoot. It fails rather than leave a root bound
// where a recursive removal of files would reach it.
func unbindRoot(files string) error {
	p := filepath.Join(files, "rootfs")
	if err := mount.Unmount(p); err != nil {
		return fmt.Errorf("unbind rootfs: %w", err)
	}
	// Remove, not RemoveAll: a directory with anything in it is still
	// a root.
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unbind rootfs: %w", err)
	}
	return nil
}

// withSysAdmin is caps with CAP_SYS_ADMIN in the bounding, effective and
// permitted sets (a copy).
func withSysAdmin(caps *configs.Capabilities) *configs.Capabilities {
	c := *caps
	add := func(set []string) []string {
		if slices.Contains(set, "CAP_SYS_ADMIN") {
			return set
		}
		return append(slices.Clone(set), "CAP_SYS_ADMIN")
	}
	c.Bounding, c.Effective, c.Permitted = add(c.Bounding), add(c.Effective), add(c.Permitted)
	return &c
}

// chownEtc gives the container's files in dir to its root's host ids, as
// they are without a user namespace: a job's root may edit /etc/hosts,
// and writing the CA bundle fails as read-only, not as someone else's.
func chownEtc(dir string, uid, gid int) error {
	for _, name := range []string{"hosts", "hostname", "resolv.conf", caBundleFile, caExtraFile} {
		err := os.Chown(filepath.Join(dir, name), uid, gid)
		if err != nil && !(errors.Is(err, os.ErrNotExist) && (name == caBundleFile || name == caExtraFile)) {
			return fmt.Errorf("chown %s: %w", name, err)
		}
	}
	return nil
}

// Cleanup removes what killed processes left behind: containers whose
// lock is free (their owner is gone), under the state dir and under every
// other state dir's run dir beside it (a state dir that no process opens
// again, as a killed `jobrun local --state-dir` or test leaves, has no
// other Cleanup to reclaim its containers' cgroups). Their processes are
// killed, their cgroups, libcontainer state and files removed. Containers
// of live processes are not touched. The error is about this state dir's
// containers; another's that cannot be removed is logged.
// OrphanedStateDirs then names the other state dirs swept that still
// exist.
func (rt *Runtime) Cleanup(ctx context.Context) error {
	orphans := rt.sweepRunDirs(ctx)
	rt.orphansMu.Lock()
	rt.orphans = orphans
	rt.orphansMu.Unlock()
	return rt.cleanupRun(ctx, rt.run)
}

// OrphanedStateDirs returns the other state dirs whose run dirs the last
// Cleanup found no live Runtime using (their process was killed before
// Close) and which still exist. The sandbox's part of them is reclaimed;
// the rest of what their dead process left (snapshots, workspaces,
// networks under the state dir) is for the caller to remove, with the
// lock-based clean-ups a process opening that state dir would run: the
// state dir may never be opened again.
func (rt *Runtime) OrphanedStateDirs() []string {
	rt.orphansMu.Lock()
	defer rt.orphansMu.Unlock()
	return slices.Clone(rt.orphans)
}

// cleanupRun removes the dead containers and namespaces of the run dir
// run (this Runtime's, or another state dir's).
func (rt *Runtime) cleanupRun(ctx context.Context, run string) error {
	files, runc := filepath.Join(run, "containers"), filepath.Join(run, "runc")
	ents, err := os.ReadDir(files)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sandbox cleanup: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("sandbox cleanup: %w", err)
		}
		if !e.IsDir() || !idPattern.MatchString(e.Name()) {
			continue
		}
		lock, err := lockfile.TryAcquire(filepath.Join(files, e.Name(), "lock"))
		if errors.Is(err, lockfile.ErrLocked) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := rt.remove(ctx, run, e.Name()); err != nil {
			errs = append(errs, err)
		} else {
			rt.log.Info("removed container left by a dead process", "id", e.Name(), "run", run)
		}
		lock.Release()
	}
	// Start makes the files dir (with the lock) before libcontainer's
	// state and Destroy removes it after, so a state without files is
	// no live container's.
	ents, err = os.ReadDir(runc)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return errors.Join(append(errs, fmt.Errorf("sandbox cleanup: %w", err))...)
	}
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(files, e.Name())); errors.Is(err, os.ErrNotExist) {
			if err := rt.remove(ctx, run, e.Name()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// After the containers: a dead job's namespaces go once nothing of
	// it uses them.
	if err := rt.cleanupNamespaces(ctx, run); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// remove kills and removes the container id of the run dir run, whose
// lock the caller holds.
func (rt *Runtime) remove(ctx context.Context, run, id string) error {
	files, runc := filepath.Join(run, "containers"), filepath.Join(run, "runc")
	var errs []error
	var cg cgroups.Manager = &pidnsGroup{c: &Container{}}
	var err error
	if !rt.rootless || rt.rlCgroups.base != "" {
		cg, err = manager.New(&cgroups.Cgroup{Path: cgroupPath(rt.cgroups, id), Resources: &cgroups.Resources{}})
	}
	if err != nil {
		return fmt.Errorf("remove container %s: cgroup manager: %w", id, err)
	}
	if err := killCgroup(ctx, cg, 0); err != nil {
		errs = append(errs, fmt.Errorf("remove container %s: %w", id, err))
	}
	if lc, err := libcontainer.Load(runc, id); err == nil {
		if err := lc.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s: %w", id, err))
		}
	} else if !errors.Is(err, libcontainer.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove container %s: load: %w", id, err))
	}
	if err := os.RemoveAll(filepath.Join(runc, id)); err != nil {
		errs = append(errs, fmt.Errorf("remove container %s: %w", id, err))
	}
	if err := cg.Destroy(); err != nil {
		errs = append(errs, fmt.Errorf("remove container %s: cgroup: %w", id, err))
	}
	if err := unbindRoot(filepath.Join(files, id)); err != nil {
		// Never recurse into a root still bound there.
		return errors.Join(append(errs, fmt.Errorf("remove container %s: %w", id, err))...)
	}
	if err := os.RemoveAll(filepath.Join(files, id)); err != nil {
		errs = append(errs, fmt.Errorf("remove container %s: %w", id, err))
	}
	return errors.Join(errs...)
}
