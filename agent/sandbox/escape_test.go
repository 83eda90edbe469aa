package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/idmap"
)

// TestEscapes runs a battery of escape attempts inside a default job
// container, where each must fail with an exact errno (or result), and the
// same probes in a deliberately privileged container, where each must
// succeed, so a probe that is broken or missing a tool can never pass as
// "blocked".
func TestEscapes(t *testing.T) { escapes(t, false, false) }

// TestEscapesUserns is the battery with the job (and the other job, the
// ptrace target) each in a user namespace of its own range.
func TestEscapesUserns(t *testing.T) { escapes(t, true, false) }

// TestEscapesBuilder is the battery with the job a building one
// (Spec.Builder): mounts and nested user namespaces are allowed by design,
// host files, other jobs, the state dir and the host's mounts stay out of
// reach.
func TestEscapesBuilder(t *testing.T) { escapes(t, true, true) }

func escapes(t *testing.T, userns, builder bool) {
	rt, stateDir := newRuntime(t)
	root := rootfs(t)
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	jobSpec := func(id string, m idmap.Mapping) Spec {
		if !userns {
			return Spec{ID: id, Rootfs: root}
		}
		ns, rfs := jobNS(t, rt, id, m, false, root)
		return Spec{ID: id, Rootfs: rfs, UserNS: ns.UserPath(), Builder: builder && id == "escape-job"}
	}
	// The target of the ptrace probe: PID 1 of another job.
	other := start(t, rt, jobSpec("other-job", rangeB))
	// A file in the agent's state dir the job must not reach.
	secret := filepath.Join(stateDir, "secret")
	write(t, secret, "s")
	t.Cleanup(func() { os.Remove(secret) })
	self := os.Getpid()

	type probe struct {
		name      string
		args      string
		job, priv string // exact outputs expected
		// usernsJob, if set, is the job's expected output in a user
		// namespace: where the kernel refuses earlier (a host root file
		// is nobody's to the range's root) with another errno.
		usernsJob string
		// builderJob, if set, is the job's expected output when it
		// builds images (else usernsJob, else job): what builder.go
		// allows by design, and /proc unmasked.
		builderJob string
		privNotOut string // for priv: any output but this one
	}
	probes := []probe{
		// A building job mounts in nested namespaces only (see the
		// nested subtest), never straight in the job's: its root steps
		// run in a mount namespace of their own, owned by a user
		// namespace of their own (builder.go), where they mount; no
		// other step and not the launcher sees it
		// (TestBuilderRootStepCannotChangeJobsNamespaces).
		{name: "mount", args: "mount", job: "EPERM", priv: "ok", builderJob: "ok"},
		{name: "mknod block device", args: "mknod-block /tmp/blk", job: "EPERM", priv: "ok"},
		{name: "unshare user namespace", args: "unshare-user", job: "EPERM", priv: "ok", builderJob: "ok"},
		// Blocked, both calls fail before the kernel looks at the image.
		// Allowed, they get past the permission checks: ENOSYS on a
		// kernel without module support (like this test machine's),
		// ENOEXEC or similar on one with it.
		{name: "load kernel module", args: "module", job: "finit=EPERM init=EPERM", privNotOut: "EPERM"},
		{name: "see host pid", args: fmt.Sprintf("stat /proc/%d", self), job: "ENOENT", priv: "ok"},
		{name: "ptrace other job's pid 1", args: fmt.Sprintf("ptrace %d", other.initPid), job: "ESRCH", priv: "ok"},
		{name: "reach state dir", args: "stat " + secret, job: "ENOENT", priv: "ENOENT"},
		{name: "reach state dir through /proc", args: fmt.Sprintf("stat /proc/%d/root%s", self, secret), job: "ENOENT", priv: "ok"},
		// /proc/sys stands for all read-only proc paths; domainname is
		// only opened, never written.
		{name: "write /proc/sys", args: "open-write /proc/sys/kernel/domainname", job: "EROFS", priv: "ok", usernsJob: "EACCES"},
	}
	// Probes of files this kernel may lack: the real file where the host
	// has it, and in any case one that exists from the same list, so the
	// mechanism (a read-only or a masked path) is always exercised.
	if exists("/proc/sysrq-trigger") {
		probes = append(probes, probe{name: "write sysrq-trigger", args: "open-write /proc/sysrq-trigger", job: "EROFS", priv: "ok", usernsJob: "EACCES"})
	} else {
		t.Log("host kernel has no /proc/sysrq-trigger; read-only /proc paths tested on /proc/sys")
		probes = append(probes, probe{name: "write sysrq-trigger (absent on host)", args: "open-write /proc/sysrq-trigger", job: "ENOENT", priv: "ENOENT"})
	}
	if exists("/proc/kcore") {
		// Unmasked in a building job, the kernel refuses it: the file
		// is host root's, 0400, an owner the job's namespace does not
		// map, so its root's CAP_DAC_OVERRIDE does not apply (EACCES,
		// at open, before kcore's CAP_SYS_RAWIO check; seen on
		// Debian's 6.1 in test-vm).
		probes = append(probes, probe{name: "read kcore", args: "read /proc/kcore", job: "eof", priv: "ok", builderJob: "EACCES"})
	} else {
		probes = append(probes, probe{name: "read kcore (absent on host)", args: "read /proc/kcore", job: "ENOENT", priv: "ENOENT"})
	}
	masked := ""
	for _, p := range maskedPaths {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && strings.HasPrefix(p, "/proc/") {
			masked = p
			break
		}
	}
	if masked == "" {
		t.Fatal("no masked /proc file exists on this host to test masking with")
	}
	// A building job's /proc is unmasked: the file is the host's
	// description of its hardware, readable by every user (builder.go).
	probes = append(probes, probe{name: "read masked " + masked, args: "read " + masked, job: "eof", priv: "ok", builderJob: "ok"})

	job := start(t, rt, jobSpec("escape-job", rangeA))
	priv := start(t, rt, Spec{ID: "escape-priv", Rootfs: root, Privileged: true})
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			want := p.job
			if userns && p.usernsJob != "" {
				want = p.usernsJob
			}
			if builder && p.builderJob != "" {
				want = p.builderJob
			}
			exit, out, errOut := sh(t, job, Process{}, "probe "+p.args)
			if got := strings.TrimSpace(out); !exit.Success() || got != want {
				t.Errorf("job container: %s, got %q (stderr %q), want %q", exit, got, errOut, want)
			}
			exit, out, errOut = sh(t, priv, Process{}, "probe "+p.args)
			got := strings.TrimSpace(out)
			switch {
			case !exit.Success():
				t.Errorf("privileged control: %s (stderr %q)", exit, errOut)
			case p.privNotOut != "":
				if got == "" || strings.Contains(got, p.privNotOut) || strings.Contains(got, "error") {
					t.Errorf("privileged control: got %q, want no %s", got, p.privNotOut)
				}
				t.Logf("privileged control: %s", got)
			case got != p.priv:
				t.Errorf("privileged control: got %q (stderr %q), want %q", got, errOut, p.priv)
			}
		})
	}
	t.Run("hostname", func(t *testing.T) {
		if _, out, _ := sh(t, job, Process{}, "probe hostname"); strings.TrimSpace(out) != "escape-job" {
			t.Errorf("job container sees hostname %q, want its id", out)
		}
		if _, out, _ := sh(t, priv, Process{}, "probe hostname"); strings.TrimSpace(out) != hostname {
			t.Errorf("privileged control sees hostname %q, want the host's %q", out, hostname)
		}
	})
	t.Run("nested namespaces", func(t *testing.T) {
		// In a nested user and mount namespace a building job mounts
		// (tmpfs, a procfs of a nested pid namespace) but cannot take off or
		// loosen the runtime's mounts (locked there), its procfs shows
		// no host process; a bind of its root without the mounts on it
		// (which would show what lies under them) is refused (EINVAL:
		// locked children), and a recursive one holds only the job's
		// own tree: no state dir, nothing of the host's /proc.
		script := fmt.Sprintf(`unshare -r -m -p -f sh -c '
mkdir -p /tmp/m /tmp/p
mount -t tmpfs x /tmp/m && echo mounted
umount /etc/hosts 2>/dev/null && echo hosts-gone || echo hosts-locked
mount -o remount,rw /sys 2>/dev/null && echo sys-rw || echo sys-locked
mount -t proc proc /tmp/p && echo proc-mounted
test -e /tmp/p/%d && echo host-pid || echo no-host-pid
mkdir -p /tmp/r /tmp/rr
mount --bind / /tmp/r 2>/dev/null && echo root-bound || echo root-locked
mount --rbind / /tmp/rr && echo root-rbound
test -e /tmp/rr%s && echo state-dir || echo no-state-dir
test -e /tmp/rr/proc/%d && echo host-proc || echo no-host-proc
' 2>&1`, self, secret, self)
		want := "mounted hosts-locked sys-locked proc-mounted no-host-pid root-locked root-rbound no-state-dir no-host-proc"
		_, out, _ := sh(t, job, Process{}, script)
		got := strings.Join(strings.Fields(out), " ")
		switch {
		case builder && got != want:
			t.Errorf("building job: got %q, want %q", got, want)
		case !builder && strings.Contains(got, "mounted"):
			t.Errorf("job mounts in a nested namespace: %q", got)
		}
	})
	t.Run("network none", func(t *testing.T) {
		_, out, _ := sh(t, job, Process{}, "ls /sys/class/net")
		if got := strings.Fields(out); len(got) != 1 || got[0] != "lo" {
			t.Errorf("job container sees interfaces %q, want only lo", got)
		}
	})
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestCompat32 runs a 32-bit x86 binary: the default filter knows only the
// native system call table, so it dies of SIGSYS; with Compat32 (Docker's
// behaviour) and in the privileged control it runs.
func TestCompat32(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("32-bit x86 compat only exists on amd64, not %s", runtime.GOARCH)
	}
	rt, _ := newRuntime(t)
	root := rootfs(t)
	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{ID: "native-only", Rootfs: root}, "killed by signal 31 (bad system call)"},
		{Spec{ID: "compat32", Rootfs: root, Compat32: true}, "exit code 0"},
		{Spec{ID: "compat32-priv", Rootfs: root, Privileged: true}, "exit code 0"},
	} {
		c := start(t, rt, tc.spec)
		exit, err := c.Exec(context.Background(), Process{Args: []string{"/usr/local/bin/probe386", "true"}})
		if err != nil {
			t.Fatal(err)
		}
		if exit.String() != tc.want {
			t.Errorf("%s: %s, want %s", tc.spec.ID, exit, tc.want)
		}
		// The 64-bit probe runs everywhere.
		if exit, _, _ := sh(t, c, Process{}, "probe true"); !exit.Success() {
			t.Errorf("%s: 64-bit probe: %s", tc.spec.ID, exit)
		}
	}
}
