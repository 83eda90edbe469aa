package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/internal/mount"
	"github.com/jobrun/jobrun/internal/pdeath"
	"github.com/jobrun/jobrun/internal/rootless"
	"github.com/jobrun/jobrun/internal/units"
	"github.com/jobrun/jobrun/jobs"
)

// Running jobs without root (issue #18). An unprivileged `jobrun local`
// re-executes itself in a new user and mount namespace in which it is
// root: the user's own uid is 0 there and their subordinate ranges
// (/etc/subuid, /etc/subgid) are 1 and up, written by shadow's setuid
// newuidmap and newgidmap, as rootless podman and buildah do. jobrun has
// no setuid binary and no daemon of its own.
//
// The child cannot be given the mapping before it runs (only the parent,
// through newuidmap, can write it once the child exists), and an execve
// before the mapping leaves it without capabilities; so it starts as a
// small shell that waits until the parent has written both maps
// (rootlessWaitScript) and then executes jobrun in stage "run", now as the
// namespace's root with its full capability set.

// rootlessStageEnv carries the child's stage; it is jobrun's own, never a
// job's.
const rootlessStageEnv = "JOBRUN_ROOTLESS_STAGE"

func init() {
	rootlessRearm()
}

// rootlessRearm is the start of the child's stage "run": the parent-death
// signal rootlessReexec asked for is cleared by the execve that gave this
// process its capabilities in the namespace, so it is asked for again; a
// parent already gone (killed between the two) ends this process too.
func rootlessRearm() {
	if os.Getenv(rootlessStageEnv) != "run" {
		return
	}
	ppid := os.Getenv(rootlessParentEnv)
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "jobrun: parent-death signal:", err)
		os.Exit(1)
	}
	if strconv.Itoa(os.Getppid()) != ppid {
		os.Exit(1)
	}
}

// rootlessParentEnv carries the pid of the process that made the
// namespace, which the child checks is still its parent.
const rootlessParentEnv = "JOBRUN_ROOTLESS_PARENT"

// rootlessChild reports whether this process is the child rootlessReexec
// started: root of the user's namespace.
func rootlessChild() bool {
	return os.Getenv(rootlessStageEnv) == "run" && os.Geteuid() == 0 && rootless.InUserNS()
}

// rootlessCommand runs the commands that work on the state dir (local,
// image, cache) again in the user's namespace when jobrun runs without
// root, and then ends with the child's exit code; others run as they are.
func rootlessCommand(cmd *cobra.Command, g *globals) error {
	path := strings.Fields(cmd.CommandPath())
	if len(path) < 2 || !slices.Contains([]string{"local", "image", "cache"}, path[1]) {
		return nil
	}
	done, err := rootlessReexec(cmd, g)
	if done && err == nil {
		return &exitError{code: 0}
	}
	return err
}

// rootlessReexec runs this command again in a user namespace when jobrun
// runs without root; it reports whether it did (then err is the child's
// outcome). As root, or already in the namespace, it does nothing.
func rootlessReexec(cmd *cobra.Command, g *globals) (bool, error) {
	if os.Geteuid() == 0 {
		return false, nil
	}
	u, err := user.Current()
	if err != nil {
		return true, fmt.Errorf("running jobs without root: who am I: %w", err)
	}
	uid := os.Getuid()
	uids, err := rootless.SubIDs("/etc/subuid", u.Username, uid)
	if err != nil {
		return true, err
	}
	gids, err := rootless.SubIDs("/etc/subgid", u.Username, uid)
	if err != nil {
		return true, err
	}
	// Without ranges, own-uid mode (rootless_ownuid.go): said once, here.
	ownUID := len(uids) == 0 || len(gids) == 0
	var newuidmap, newgidmap string
	if ownUID {
		fmt.Fprintln(os.Stderr, ownUIDWarning(u.Username))
	} else {
		var err1, err2 error
		newuidmap, err1 = exec.LookPath("newuidmap")
		newgidmap, err2 = exec.LookPath("newgidmap")
		if err1 != nil || err2 != nil {
			return true, errors.New("running jobs without root needs newuidmap and newgidmap (Debian/Ubuntu: apt install uidmap; Fedora: shadow-utils)")
		}
	}
	env, err := rootlessEnv(cmd, g, u)
	if err != nil {
		return true, err
	}
	// The child's own-uid marker is this process's, never inherited.
	env = slices.DeleteFunc(env, func(e string) bool { return strings.HasPrefix(e, rootlessOwnUIDEnv+"=") })
	if ownUID {
		env = append(env, rootlessOwnUIDEnv+"="+subIDsLine(u.Username))
	}

	r, w, err := os.Pipe()
	if err != nil {
		return true, err
	}
	child, err := rootlessWaiter()
	if err != nil {
		r.Close()
		w.Close()
		return true, err
	}
	child.Env = append(env, rootlessStageEnv+"=run", rootlessParentEnv+"="+strconv.Itoa(os.Getpid()))
	child.Stdin, child.Stdout, child.Stderr = os.Stdin, os.Stdout, os.Stderr
	child.ExtraFiles = []*os.File{r}
	child.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		// pdeath.Start adds SIGKILL as the parent-death signal: the jobs'
		// containers die with their parent (ParentDeathSignal); this makes
		// a killed jobrun take its namespace with it.
		// The child has a process group of its own, in the terminal's
		// foreground if there is one: a Ctrl-C reaches it once, never
		// this process, and it can read the terminal (--shell-on-failure).
		// A SIGINT or SIGTERM sent to this process is passed on.
		Setpgid: true,
	}
	tty := isTTY(os.Stdin)
	if tty {
		child.SysProcAttr.Foreground, child.SysProcAttr.Ctty = true, int(os.Stdin.Fd())
		defer func() {
			// Take the terminal back for the shell that waits for us.
			signal.Ignore(syscall.SIGTTOU)
			_ = unix.IoctlSetPointerInt(int(os.Stdin.Fd()), unix.TIOCSPGRP, syscall.Getpgrp())
			signal.Reset(syscall.SIGTTOU)
		}()
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	wait, err := pdeath.Start(child)
	if err != nil {
		r.Close()
		w.Close()
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.ENOSPC) {
			return true, fmt.Errorf("running jobs without root: this host does not let users make user namespaces (%w): "+
				"sysctl user.max_user_namespaces must be above 0, kernel.unprivileged_userns_clone 1 where it exists, "+
				"and where kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu 24.04) jobrun needs an AppArmor profile with \"userns,\"", err)
		}
		return true, fmt.Errorf("running jobs without root: start in a user namespace: %w", err)
	}
	r.Close()
	pid := strconv.Itoa(child.Process.Pid)
	if ownUID {
		if err := writeOwnMaps(child.Process.Pid, uid, os.Getgid()); err != nil {
			w.Close()
			_ = wait()
			return true, err
		}
	} else if err := writeMaps(pid, idMap{newuidmap, uid, uids}, idMap{newgidmap, os.Getgid(), gids}); err != nil {
		w.Close()
		_ = wait()
		return true, fmt.Errorf("running jobs without root: %w", err)
	}
	if _, err := w.WriteString(rootlessMapped); err != nil {
		w.Close()
		_ = wait()
		return true, fmt.Errorf("running jobs without root: %w", err)
	}
	w.Close()
	done := make(chan error, 1)
	go func() { done <- wait() }()
	for {
		select {
		case s := <-sig:
			_ = child.Process.Signal(s)
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return true, &exitError{code: 128 + int(ws.Signal())}
				}
				return true, &exitError{code: ee.ExitCode()}
			}
			return true, err
		}
	}
}

// subIDsLine is the exact command that gives the user name a free range
// of subordinate ids.
func subIDsLine(name string) string {
	line := "sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 " + name
	if r, err := rootless.FreeRange(65536, "/etc/subuid", "/etc/subgid"); err == nil {
		span := fmt.Sprintf("%d-%d", r.Start, uint64(r.Start)+uint64(r.Count)-1)
		line = fmt.Sprintf("sudo usermod --add-subuids %s --add-subgids %s %s", span, span, name)
	}
	return line
}

// rootlessEnv is the child's environment: this one, with the per-user
// state dir ($XDG_DATA_HOME/jobrun, else ~/.local/share/jobrun) unless
// --state-dir or its variable names one, and a runtime dir
// ($XDG_RUNTIME_DIR, else a private one under /tmp).
func rootlessEnv(cmd *cobra.Command, g *globals, u *user.User) ([]string, error) {
	env := os.Environ()
	if !stateDirSet(cmd) {
		dir, err := userStateDir(u)
		if err != nil {
			return nil, err
		}
		env = append(env, "JOBRUN_STATE_DIR="+dir)
	}
	if rd := os.Getenv("XDG_RUNTIME_DIR"); rd == "" || !ownDir(rd) {
		dir := filepath.Join(os.TempDir(), "jobrun-run-"+strconv.Itoa(os.Getuid()))
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("runtime dir: %w", err)
		}
		if !ownDir(dir) {
			return nil, fmt.Errorf("runtime dir: %s is not a directory only you can write; remove it", dir)
		}
		env = append(env, "XDG_RUNTIME_DIR="+dir)
	}
	return env, nil
}

// stateDirSet reports whether --state-dir or JOBRUN_STATE_DIR names the
// state dir.
func stateDirSet(cmd *cobra.Command) bool {
	if f := cmd.Flag("state-dir"); f != nil && f.Changed {
		return true
	}
	_, ok := os.LookupEnv("JOBRUN_STATE_DIR")
	return ok
}

// userStateDir is $XDG_DATA_HOME/jobrun, else ~/.local/share/jobrun.
func userStateDir(u *user.User) (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "jobrun"), nil
	}
	home := os.Getenv("HOME")
	if home == "" {
		home = u.HomeDir
	}
	if home == "" {
		return "", errors.New("running jobs without root: no HOME or XDG_DATA_HOME for the state dir; pass --state-dir")
	}
	return filepath.Join(home, ".local", "share", "jobrun"), nil
}

// ownDir reports whether dir is a directory of this user's that nobody
// else can write.
func ownDir(dir string) bool {
	fi, err := os.Lstat(dir)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return fi.IsDir() && ok && int(st.Uid) == os.Getuid() && fi.Mode().Perm()&0o022 == 0
}

// rootlessCheck refuses, before anything runs, what jobrun without root
// cannot do: overlays where the kernel or the state dir's filesystem
// cannot have them in a user namespace (probed once per kernel and file
// system, the pass recorded in the state dir).
func rootlessCheck(g *globals, plan []*jobs.Job) error {
	if !rootlessChild() {
		return nil
	}
	dir, err := g.absStateDir()
	if err != nil {
		return err
	}
	if _, err := mount.ChooseUserOverlay(dir); err != nil {
		return fmt.Errorf("running jobs without root: %w", err)
	}
	return nil
}

// rootlessLimits says after the summary which limits jobrun without root
// did not enforce, per job, and why (all for one reason without a
// delegated cgroup v2 subtree, where CPU and PEAK MEM are not measured
// either; only those whose controller is missing with one).
func rootlessLimits(w io.Writer, plan []*jobs.Job, sb *sandbox.Runtime) {
	if !rootlessChild() {
		return
	}
	unenforced, measured := sb.RootlessLimits()
	writeUnenforced(w, plan, unenforced, measured)
}

// writeUnenforced writes, per reason in unenforced (limit name to why),
// the plan's jobs' limits not enforced for it.
func writeUnenforced(w io.Writer, plan []*jobs.Job, unenforced map[string]string, measured bool) {
	var whys []string
	for _, why := range unenforced {
		if !slices.Contains(whys, why) {
			whys = append(whys, why)
		}
	}
	slices.Sort(whys)
	for _, why := range whys {
		fmt.Fprintf(w, "\nlimits not enforced: %s", why)
		if !measured {
			fmt.Fprint(w, "; CPU and PEAK MEM not measured")
		}
		fmt.Fprintln(w)
		for _, j := range plan {
			var l []string
			if r := j.Resources; r.CPUs > 0 && unenforced["cpus"] == why {
				l = append(l, "cpus = "+strconv.FormatFloat(r.CPUs, 'f', -1, 64))
			}
			if r := j.Resources; r.Memory > 0 && unenforced["memory"] == why {
				l = append(l, "memory = "+units.FormatSize(r.Memory))
			}
			if r := j.Resources; r.Pids > 0 && unenforced["pids"] == why {
				l = append(l, "pids = "+strconv.FormatInt(r.Pids, 10))
			}
			if len(l) > 0 {
				fmt.Fprintf(w, "  %s: %s\n", j.Name, strings.Join(l, ", "))
			}
		}
	}
}

// isTTY reports whether f is a terminal.
func isTTY(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// enterCommand is the command that enters a kept container (--keep). As
// root: all its namespaces. Without root the container shares the host's
// time namespace, which only the host's root may enter, so it names the
// others, the user namespace first.
func enterCommand(pid int) string {
	if rootlessChild() {
		return fmt.Sprintf("nsenter --target %d --user --mount --uts --ipc --net --pid --cgroup /bin/sh", pid)
	}
	return fmt.Sprintf("nsenter --target %d --all /bin/sh", pid)
}

// rootlessUsernsWhy is why jobs get no user namespace of their own without
// root: every job runs in the user's, made by rootlessReexec (one range
// for all of a user's jobs); ranges per job within it are issue #18's.
const rootlessUsernsWhy = "jobrun runs without root: every job runs in your user namespace (you are its root, your subordinate ids the rest)"
