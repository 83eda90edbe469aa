package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// fullCaps is CapEff of a process holding every capability this kernel
// knows: a nested user namespace's root.
func fullCaps(t *testing.T) string {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		t.Fatal(err)
	}
	last, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%016x", uint64(1)<<(last+1)-1)
}

// nsOf is the namespace link name of the container's init (the
// launcher): the job's namespace of that type.
func nsOf(t *testing.T, c *Container, typ string) string {
	s, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", c.Pid(), typ))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// idOf is what a step says of itself: its user and mount namespaces,
// its uid_map and gid_map (fields), CapEff and Seccomp.
const idOf = `readlink /proc/self/ns/user; readlink /proc/self/ns/mnt; echo $(cat /proc/self/uid_map) / $(cat /proc/self/gid_map)
sed -n 's/^\(CapEff\|Seccomp\):\t//p' /proc/self/status`

// TestBuilderRootStepIsRootOfNestedUserns: a building container's root
// step runs as root of a user namespace of its own, nested in the job's,
// with the identity mapping of the job's ids, a mount namespace of its
// own, every capability there (CAP_SYS_ADMIN included, so buildah takes
// its rootful path) and the job's seccomp filter. Controls: a non-root
// step and an interactive shell (Stdin set) of the same container stay
// in the job's namespaces with the job's capabilities, as does a
// non-building container's root step.
func TestBuilderRootStepIsRootOfNestedUserns(t *testing.T) {
	rt, _ := newRuntime(t)
	root := rootfs(t)
	ns, rfs := jobNS(t, rt, "builder-nest", rangeA, false, root)
	c := start(t, rt, Spec{ID: "builder-nest", Rootfs: rfs, UserNS: ns.UserPath(), Builder: true})
	jobUser, jobMnt := nsOf(t, c, "user"), nsOf(t, c, "mnt")
	size := strconv.FormatUint(uint64(rangeA.Size), 10)
	rangeMap := fmt.Sprintf("0 %d %s / 0 %d %s", rangeA.UID, size, rangeA.GID, size)
	step := func(c *Container, p Process) []string {
		t.Helper()
		exit, out, errOut := sh(t, c, p, idOf)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if !exit.Success() || len(lines) != 5 {
			t.Fatalf("%s: %s: %q %q", c.ID(), exit, out, errOut)
		}
		return lines
	}

	got := step(c, Process{})
	if got[0] == jobUser || got[1] == jobMnt {
		t.Errorf("root step in the job's namespaces %s %s, want nested ones", got[0], got[1])
	}
	if want := "0 0 " + size + " / 0 0 " + size; got[2] != want {
		t.Errorf("root step's maps %q, want the identity %q", got[2], want)
	}
	if want := fullCaps(t); got[3] != want {
		t.Errorf("root step's CapEff %s, want %s (all, in its own namespace)", got[3], want)
	}
	if got[4] != "2" {
		t.Errorf("root step's Seccomp %s, want 2 (the job's filter)", got[4])
	}

	for _, tc := range []struct {
		name string
		c    *Container
		p    Process
		caps string
	}{
		{"non-root step", c, Process{User: "1000:1000"}, "0000000000000000"},
		{"interactive shell", c, Process{Stdin: strings.NewReader("")}, "00000000a80405fb"},
	} {
		got := step(tc.c, tc.p)
		if want := []string{jobUser, jobMnt, rangeMap, tc.caps, "2"}; strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s: %q, want %q (not nested)", tc.name, got, want)
		}
	}

	ns2, rfs2 := jobNS(t, rt, "nobuilder-nest", rangeA, false, root)
	plain := start(t, rt, Spec{ID: "nobuilder-nest", Rootfs: rfs2, UserNS: ns2.UserPath()})
	got = step(plain, Process{})
	if want := []string{nsOf(t, plain, "user"), nsOf(t, plain, "mnt"), rangeMap, "00000000a80405fb", "2"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("non-building container's root step: %q, want %q (not nested, no CAP_SYS_ADMIN)", got, want)
	}
}

// TestBuilderRootStepCannotChangeJobsNamespaces: a building container's
// root step, with every capability in its own user namespace, holds none
// over the job's namespaces: a tmpfs it mounts is in its own mount
// namespace (no later step sees it, nor the launcher), it cannot take
// off the runtime's mounts (locked in its copy), set the job's hostname,
// or change the job's network (a net sysctl, the loopback link). Each
// refusal has its positive control: the same in a namespace the step
// makes (unshare) works.
func TestBuilderRootStepCannotChangeJobsNamespaces(t *testing.T) {
	rt, _ := newRuntime(t)
	ns, rfs := jobNS(t, rt, "builder-nest-ns", rangeA, false, rootfs(t))
	c := start(t, rt, Spec{ID: "builder-nest-ns", Rootfs: rfs, UserNS: ns.UserPath(), Builder: true})
	run := func(p Process, script, want string) {
		t.Helper()
		_, out, errOut := sh(t, c, p, script)
		if got := strings.Join(strings.Fields(out), " "); got != want {
			t.Errorf("%s: got %q (stderr %q), want %q", script, got, errOut, want)
		}
	}
	run(Process{}, `mkdir -p /tmp/nm && mount -t tmpfs nest /tmp/nm && touch /tmp/nm/made && echo mounted`, "mounted")
	run(Process{}, `test -e /tmp/nm/made && echo seen || echo unseen`, "unseen")
	run(Process{User: "1000:1000"}, `test -e /tmp/nm/made && echo seen || echo unseen`, "unseen")
	mountinfo, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", c.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mountinfo), " /tmp/nm ") || !strings.Contains(string(mountinfo), " /etc/hosts ") {
		t.Errorf("the job's mount namespace (the launcher's):\n%s", mountinfo)
	}
	run(Process{}, `umount /etc/hosts 2>/dev/null && echo gone || echo locked; umount -l /sys 2>/dev/null && echo gone || echo locked`, "locked locked")

	run(Process{}, `probe sethostname changed; unshare -u probe sethostname changed; hostname`, "EPERM ok builder-nest-ns")

	run(Process{}, `probe open-write /proc/sys/net/ipv4/ip_forward; unshare -n probe open-write /proc/sys/net/ipv4/ip_forward`, "EACCES ok")
	run(Process{}, `ip link set lo down 2>/dev/null && echo down || echo refused; unshare -n ip link set lo up && echo up-in-own`, "refused up-in-own")
	// The control of the control: the job's loopback is still up.
	run(Process{User: "1000:1000"}, `ip -o link show lo | grep -q 'UP' && echo up`, "up")
}

// TestBuilderStepsBindLowPortsAndPing: a building container's own
// network namespace has Docker's sysctls (builderSysctls), so its steps,
// root ones too (which hold no capability over the job's network
// namespace), bind port 80 and open ICMP echo sockets; the control, a
// non-root step of a non-building container (no such sysctls there, no
// capabilities), is refused both.
func TestBuilderStepsBindLowPortsAndPing(t *testing.T) {
	rt, _ := newRuntime(t)
	root := rootfs(t)
	ns, rfs := jobNS(t, rt, "builder-ports", rangeA, false, root)
	c := start(t, rt, Spec{ID: "builder-ports", Rootfs: rfs, UserNS: ns.UserPath(), Builder: true})
	ns2, rfs2 := jobNS(t, rt, "nobuilder-ports", rangeA, false, root)
	plain := start(t, rt, Spec{ID: "nobuilder-ports", Rootfs: rfs2, UserNS: ns2.UserPath()})
	for _, tc := range []struct {
		name string
		c    *Container
		p    Process
		want string
	}{
		{"building container's root step", c, Process{}, "ok ok"},
		{"building container's non-root step", c, Process{User: "1000:1000"}, "ok ok"},
		{"non-building container's non-root step", plain, Process{User: "1000:1000"}, "EACCES EACCES"},
	} {
		_, out, errOut := sh(t, tc.c, tc.p, `probe bind-port 80; probe ping-socket`)
		if got := strings.Join(strings.Fields(out), " "); got != tc.want {
			t.Errorf("%s: got %q (stderr %q), want %q", tc.name, got, errOut, tc.want)
		}
	}
}

// TestBuilderBuildahTakesNoReexec: buildah in a building container's
// root step, root with CAP_SYS_ADMIN in its nested user namespace, runs
// as it was started: containers/storage's MaybeReexecUsingUserNamespace
// re-executes it in a user namespace of its own (argv[0]
// "buildah-in-a-user-namespace", which its debug log names) only for a
// process without CAP_SYS_ADMIN, about 14 ms per buildah command. The
// control: the same command in an interactive shell of the container (in
// the job's user namespace, without CAP_SYS_ADMIN) is re-executed.
func TestBuilderBuildahTakesNoReexec(t *testing.T) {
	rt, _ := newRuntime(t)
	ns, rfs := jobNS(t, rt, "builder-reexec", rangeA, false, builderRoot(t))
	storage := t.TempDir()
	traversable(t, storage)
	c := start(t, rt, Spec{ID: "builder-reexec", Rootfs: rfs, UserNS: ns.UserPath(), Builder: true,
		Env:    []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"},
		Mounts: []Mount{{Source: storage, Target: "/var/lib/containers", IDMap: true}}})
	const script = `buildah --log-level debug images 2>&1; echo "exit $?"`
	for _, tc := range []struct {
		name   string
		p      Process
		reexec bool
	}{
		{"root step", Process{}, false},
		{"interactive shell (control)", Process{Stdin: strings.NewReader("")}, true},
	} {
		_, out, _ := sh(t, c, tc.p, script)
		if !strings.Contains(out, "exit 0") || !strings.Contains(out, "REPOSITORY") {
			t.Fatalf("%s: buildah images failed:\n%s", tc.name, out)
		}
		if got := strings.Contains(out, "buildah-in-a-user-namespace"); got != tc.reexec {
			t.Errorf("%s: re-executed %v, want %v:\n%s", tc.name, got, tc.reexec, out)
		}
	}
}
