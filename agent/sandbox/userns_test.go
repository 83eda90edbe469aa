package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/lockfile"
	"github.com/jobrun/jobrun/internal/testenv"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// Ranges no process or file on the host uses: two jobs' ranges.
var (
	rangeA = idmap.Mapping{UID: 3_100_000_000, GID: 3_100_000_000, Size: 65536}
	rangeB = idmap.Mapping{UID: 3_100_065_536, GID: 3_100_065_536, Size: 65536}
)

// traversable makes dir and its parents up to the temp dir 0711, as the
// state dir's path down to a snapshot is.
func traversable(t testing.TB, dir string) {
	t.Helper()
	tmp := os.TempDir()
	for d := dir; strings.HasPrefix(d, tmp+"/"); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
}

// jobNS makes the namespaces of job id with mapping m and a root for it
// from the busybox rootfs of the test (an overlay over its idmapped view,
// as the image store makes one); both go when the test ends, after the
// containers started later.
func jobNS(t *testing.T, rt *Runtime, id string, m idmap.Mapping, net bool, root string) (*Namespaces, string) {
	t.Helper()
	ns, err := rt.NewNamespaces(id, m, net)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Error(err)
		}
	})
	snaps := filepath.Join(t.TempDir(), "snapshots")
	if err := os.Mkdir(snaps, 0o711); err != nil {
		t.Fatal(err)
	}
	traversable(t, snaps)
	o, err := idmap.NewOverlay(ns.Userns(), []string{root}, filepath.Join(snaps, id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := o.Remove(); err != nil {
			t.Error(err)
		}
	})
	return ns, o.Rootfs()
}

// hostIDs reads the real, effective, saved and filesystem uids and gids
// of pid from the host's /proc.
func hostIDs(t *testing.T, pid int) (uids, gids []uint32) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		if k != "Uid" && k != "Gid" {
			continue
		}
		for _, f := range strings.Fields(v) {
			n, err := strconv.ParseUint(f, 10, 32)
			if err != nil {
				t.Fatal(err)
			}
			switch k {
			case "Uid":
				uids = append(uids, uint32(n))
			case "Gid":
				gids = append(gids, uint32(n))
			}
		}
	}
	if len(uids) != 4 || len(gids) != 4 {
		t.Fatalf("/proc/%d/status: uids %v gids %v", pid, uids, gids)
	}
	return uids, gids
}

// TestUsernsStepRunsAsRangeRoot: from the host, every process of a job in
// a user namespace (its init and a step) runs as the first id of its
// range, never 0; inside, the step is root and its uid_map shows the
// range. The control, without a user namespace, runs as host root.
func TestUsernsStepRunsAsRangeRoot(t *testing.T) {
	rt, _ := newRuntime(t)
	root := rootfs(t)
	ns, rfs := jobNS(t, rt, "userns-ids", rangeA, false, root)
	c := start(t, rt, Spec{ID: "userns-ids", Rootfs: rfs, UserNS: ns.UserPath()})
	control := start(t, rt, Spec{ID: "userns-ids-off", Rootfs: root})

	exit, out, errOut := sh(t, c, Process{}, `id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; sleep 1000 >/dev/null 2>&1 &`)
	if !exit.Success() {
		t.Fatalf("step: %s: %s", exit, errOut)
	}
	want := fmt.Sprintf("0\n0\n0 %d 65536\n0 %d 65536\n", rangeA.UID, rangeA.GID)
	if got := strings.Join(strings.Fields(out), " "); got != strings.Join(strings.Fields(want), " ") {
		t.Errorf("inside: %q, want %q", out, want)
	}
	pids, err := c.cg.GetAllPids()
	if err != nil || len(pids) < 2 {
		t.Fatalf("processes of the job: %v, %v", pids, err)
	}
	for _, pid := range pids {
		uids, gids := hostIDs(t, pid)
		for i := range uids {
			if uids[i] != rangeA.UID || gids[i] != rangeA.GID {
				t.Errorf("process %d runs on the host as uids %v gids %v, want %d:%d", pid, uids, gids, rangeA.UID, rangeA.GID)
				break
			}
		}
	}
	if uids, _ := hostIDs(t, control.Pid()); uids[0] != 0 {
		t.Errorf("control: init runs as host uid %d, want 0", uids[0])
	}
	_, out, _ = sh(t, control, Process{}, `cat /proc/self/uid_map`)
	if got := strings.Join(strings.Fields(out), " "); got != "0 0 4294967295" {
		t.Errorf("control's uid_map: %q", out)
	}
}

// TestUsernsChownAnyID: a job's root chowns to any id of 0-65535 in its
// rootfs, its /tmp and a workspace built for the range, and writes its
// /etc/hosts; on the host the files belong to the range.
func TestUsernsChownAnyID(t *testing.T) {
	rt, _ := newRuntime(t)
	ns, rfs := jobNS(t, rt, "userns-chown", rangeA, false, rootfs(t))
	c := start(t, rt, Spec{ID: "userns-chown", Rootfs: rfs, UserNS: ns.UserPath()})
	exit, out, errOut := sh(t, c, Process{}, `set -e
		for d in / /tmp /etc /home/builder; do
			for id in 0 1 1000 65534 65535; do
				f=$d/f$id; echo x > $f; chown $id:$id $f
				[ "$(stat -c %u:%g $f)" = "$id:$id" ]
			done
		done
		chown 1000 /usr/local/bin/probe
		echo "10.0.0.1 extra" >> /etc/hosts
		mkdir /tmp/d && chown 65535:65535 /tmp/d && echo ok`)
	if !exit.Success() || strings.TrimSpace(out) != "ok" {
		t.Fatalf("%s: %s %s", exit, out, errOut)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(rfs, "tmp/f65535"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != rangeA.UID+65535 || st.Gid != rangeA.GID+65535 {
		t.Errorf("tmp/f65535 on the host: %d:%d, want %d:%d", st.Uid, st.Gid, rangeA.UID+65535, rangeA.GID+65535)
	}
	// An id past the range has no host id.
	if exit, _, errOut := sh(t, c, Process{}, `chown 65536 /tmp/f0`); exit.Success() {
		t.Errorf("chown to 65536 worked: %s", errOut)
	}
}

// TestUsernsSetuidWorks: no_new_privs is off in a user namespace, so a
// set-uid root binary (a copy of the probe the job's root made) raises a
// non-root user to the range's root, and root switches user with su;
// without a user namespace no_new_privs keeps the set-uid bit from
// working (the control).
func TestUsernsSetuidWorks(t *testing.T) {
	rt, _ := newRuntime(t)
	root := rootfs(t)
	ns, rfs := jobNS(t, rt, "userns-suid", rangeA, false, root)
	script := `cp /usr/local/bin/probe /usr/local/bin/probe-suid && chmod 4755 /usr/local/bin/probe-suid && su -s /bin/sh -c 'id -u' builder`
	asBuilder := `grep NoNewPrivs /proc/self/status; /usr/local/bin/probe-suid euid`
	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{ID: "userns-suid", Rootfs: rfs, UserNS: ns.UserPath()}, "NoNewPrivs:\t0\n0\n"},
		{Spec{ID: "userns-suid-off", Rootfs: root}, "NoNewPrivs:\t1\n1000\n"},
	} {
		c := start(t, rt, tc.spec)
		if exit, out, errOut := sh(t, c, Process{}, script); !exit.Success() || out != "1000\n" {
			t.Fatalf("%s: as root: %s: %q %s", tc.spec.ID, exit, out, errOut)
		}
		_, out, errOut := sh(t, c, Process{User: "builder"}, asBuilder)
		if out != tc.want {
			t.Errorf("%s: as builder: %q (stderr %q), want %q", tc.spec.ID, out, errOut, tc.want)
		}
	}
}

// TestUsernsRootCannotReadHostRootFile: a root-only host file bound in
// without idmap is nobody's to the job's root, which cannot read it; bound
// with idmap, or without a user namespace (the controls), it can.
func TestUsernsRootCannotReadHostRootFile(t *testing.T) {
	rt, _ := newRuntime(t)
	root := rootfs(t)
	ns, rfs := jobNS(t, rt, "userns-secret", rangeA, false, root)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "secret"), "s")
	if err := os.Chmod(filepath.Join(dir, "secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	traversable(t, dir)
	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{ID: "userns-secret", Rootfs: rfs, UserNS: ns.UserPath(), Mounts: []Mount{{Source: dir, Target: "/host"}}}, "denied 65534:65534"},
		{Spec{ID: "userns-secret-off", Rootfs: root, Mounts: []Mount{{Source: dir, Target: "/host"}}}, "s 0:0"},
	} {
		c := start(t, rt, tc.spec)
		_, out, _ := sh(t, c, Process{}, `(cat /host/secret 2>/dev/null || printf denied); echo " $(stat -c %u:%g /host/secret)"`)
		if strings.TrimSpace(out) != tc.want {
			t.Errorf("%s: %q, want %q", tc.spec.ID, out, tc.want)
		}
	}
	// Idmapped, the job's root owns what host root owns.
	c := start(t, rt, Spec{ID: "userns-secret-idmap", Rootfs: jobRoot(t, rt, "userns-secret-idmap", root), UserNS: nsPath(t, rt, "userns-secret-idmap"),
		Mounts: []Mount{{Source: dir, Target: "/host", IDMap: true}}})
	if _, out, _ := sh(t, c, Process{}, `cat /host/secret; echo " $(stat -c %u:%g /host/secret)"`); strings.TrimSpace(out) != "s 0:0" {
		t.Errorf("idmapped: %q", out)
	}
}

// nsPath and jobRoot are jobNS in two halves for a spec literal.
func nsPath(t *testing.T, rt *Runtime, id string) string {
	return filepath.Join(rt.run, "ns", id, "user")
}

func jobRoot(t *testing.T, rt *Runtime, id, root string) string {
	_, rfs := jobNS(t, rt, id, rangeB, false, root)
	return rfs
}

// TestUsernsJobCannotSignalOtherRange: the kernel keeps one job's range
// from another's. A process that is root of job A's user namespace (as a
// step of A is, with every capability there) cannot signal or ptrace job
// B's init, even given its host pid; as root of B's own namespace (the
// control) it can.
func TestUsernsJobCannotSignalOtherRange(t *testing.T) {
	testenv.RequireTool(t, "nsenter")
	rt, _ := newRuntime(t)
	root := rootfs(t)
	nsA, rfsA := jobNS(t, rt, "userns-a", rangeA, false, root)
	nsB, rfsB := jobNS(t, rt, "userns-b", rangeB, false, root)
	a := start(t, rt, Spec{ID: "userns-a", Rootfs: rfsA, UserNS: nsA.UserPath()})
	b := start(t, rt, Spec{ID: "userns-b", Rootfs: rfsB, UserNS: nsB.UserPath()})
	// A's files dir (its /etc files, its root bound) is A's root's
	// alone: B's root cannot get in.
	for _, tc := range []struct {
		ns   *Namespaces
		want string
	}{{nsA, "userns-a"}, {nsB, "denied"}} {
		out, _ := exec.Command("nsenter", "--user="+tc.ns.UserPath(), "--", "/bin/busybox", "sh", "-c",
			"cat "+filepath.Join(a.files, "hostname")+" 2>/dev/null || echo denied").CombinedOutput()
		if got := strings.TrimSpace(string(out)); got != tc.want {
			t.Errorf("A's hostname file read as root of %s: %q, want %q", tc.ns.UserPath(), got, tc.want)
		}
	}
	probe := filepath.Join(t.TempDir(), "probe")
	copyFile(t, probeBin, probe)
	traversable(t, filepath.Dir(probe))
	for _, tc := range []struct {
		name string
		ns   *Namespaces
		want string
	}{
		{"other range", nsA, "EPERM EPERM"},
		{"own range", nsB, "ok ok"},
	} {
		script := fmt.Sprintf(`kill -0 %d 2>/dev/null && printf ok || printf EPERM; printf " "; %s ptrace %d`, b.Pid(), probe, b.Pid())
		out, err := exec.Command("nsenter", "--user="+tc.ns.UserPath(), "--", "/bin/busybox", "sh", "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", tc.name, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestNamespacesCleanup: the namespaces of a dead holder are removed by
// Cleanup, a live holder's are not, and a left one shows as a leak.
func TestNamespacesCleanup(t *testing.T) {
	rt, stateDir := newRuntime(t)
	ns, err := rt.NewNamespaces("ns-live", rangeA, true)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	for _, p := range []string{ns.UserPath(), ns.NetPath()} {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err != nil || st.Type != unix.NSFS_MAGIC {
			t.Errorf("%s: not an nsfs mount (%x, %v)", p, st.Type, err)
		}
	}
	if _, err := rt.NewNamespaces("ns-live", rangeA, false); !errors.Is(err, lockfile.ErrLocked) {
		t.Errorf("second namespaces of one id: %v", err)
	}
	if err := rt.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ns.UserPath()); err != nil {
		t.Errorf("Cleanup removed a live job's namespaces: %v", err)
	}
	// A dead holder's: the lock free, the mounts there.
	snap := leakcheck.Take(t, stateDir)
	dead, err := rt.NewNamespaces("ns-dead", rangeB, false)
	if err != nil {
		t.Fatal(err)
	}
	dead.lock.Release()
	rec := &recorder{TB: t}
	snap.Check(rec)
	if !strings.Contains(rec.msg, dead.UserPath()) {
		t.Errorf("leak checker does not report namespaces left behind: %q", rec.msg)
	}
	if err := rt.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead holder's namespaces still there: %v", err)
	}
	dead.u.Close()
	snap.Check(t)
}

// recorder is a testing.TB that keeps what Errorf says.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) { r.msg += fmt.Sprintf(format, args...) }

// TestUsernsLimitsAndKillStillWork: in a user namespace the job's cgroup
// still limits memory and reports the OOM kill, a timed-out step's
// processes (setsid'd ones and one ignoring SIGTERM included) all die,
// the pids limit holds, and Destroy kills the rest.
func TestUsernsLimitsAndKillStillWork(t *testing.T) {
	rt, _ := newRuntime(t)
	ns, rfs := jobNS(t, rt, "userns-limits", rangeA, false, rootfs(t))
	c := start(t, rt, Spec{ID: "userns-limits", Rootfs: rfs, UserNS: ns.UserPath(),
		Resources: Resources{Memory: 64 << 20, Pids: 64}, StopGrace: 200 * time.Millisecond})
	if exit, out, _ := sh(t, c, Process{}, `probe alloc 16M`); !exit.Success() || out != "ok\n" {
		t.Fatalf("control (16 MiB): %s %q", exit, out)
	}
	exit, _, _ := sh(t, c, Process{}, `exec probe alloc 256M`)
	if want := "out of memory (limit 64 MiB)"; !exit.OOMKilled || exit.String() != want {
		t.Errorf("256 MiB: %q, want %q", exit, want)
	}
	exit, _, _ = sh(t, c, Process{Timeout: time.Second},
		`setsid sleep 1000 & (setsid sh -c 'trap "" TERM; while :; do sleep 1; done' &) ; sleep 1000`)
	if want := "timed out after 1s"; exit.String() != want {
		t.Errorf("timeout: %q, want %q", exit, want)
	}
	onlyInit(t, c)
	exit, _, _ = sh(t, c, Process{Timeout: time.Minute}, `i=0; while [ $i -lt 200 ]; do sleep 1000 & i=$((i+1)); done`)
	if !exit.PidsLimit {
		t.Errorf("fork loop: %s", exit)
	}
	if exit, out, _ := sh(t, c, Process{}, `echo alive`); !exit.Success() || out != "alive\n" {
		t.Errorf("after the kills: %s %q", exit, out)
	}
}

// TestUsernsNsenterEntersJob: `nsenter --target PID --all`, what --keep
// prints, enters the job's user namespace with the rest: root there is
// the range's, in the container's root and hostname.
func TestUsernsNsenterEntersJob(t *testing.T) {
	testenv.RequireTool(t, "nsenter")
	rt, _ := newRuntime(t)
	ns, rfs := jobNS(t, rt, "userns-keep", rangeA, false, rootfs(t))
	c := start(t, rt, Spec{ID: "userns-keep", Rootfs: rfs, UserNS: ns.UserPath()})
	out, err := exec.Command("nsenter", "--target", strconv.Itoa(c.Pid()), "--all", "--", "/bin/sh", "-c",
		"id -u; hostname; cat /proc/self/uid_map; ls /dev/.jobrun").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := fmt.Sprintf("0 userns-keep 0 %d 65536 init", rangeA.UID)
	if got := strings.Join(strings.Fields(string(out)), " "); got != want {
		t.Errorf("nsenter: %q, want %q", got, want)
	}
}

// TestUsernsNetNSOwnedByJob: a job joining a network namespace made in
// its user namespace (NewNamespaces with net) mounts its own sysfs and
// sees that namespace's devices; its /dev devices work.
func TestUsernsNetNSOwnedByJob(t *testing.T) {
	rt, _ := newRuntime(t)
	ns, rfs := jobNS(t, rt, "userns-net", rangeA, true, rootfs(t))
	c := start(t, rt, Spec{ID: "userns-net", Rootfs: rfs, UserNS: ns.UserPath(), NetNS: ns.NetPath()})
	exit, out, errOut := sh(t, c, Process{}, `ls /sys/class/net; echo x > /dev/null; head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c; readlink /proc/self/ns/net`)
	if !exit.Success() {
		t.Fatalf("%s: %s", exit, errOut)
	}
	var st unix.Stat_t
	if err := unix.Stat(ns.NetPath(), &st); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("lo 4 4 net:[%d]", st.Ino)
	if got := strings.Join(strings.Fields(out), " "); got != want {
		t.Errorf("%q, want %q", got, want)
	}
}

// TestUsernsKnownMappingIsSpecconvs: the config of a container joining a
// user namespace the Runtime made (its mapping known, no process forked
// to read it) is the one specconv makes reading the mapping from the
// namespace, idmapped mounts included.
func TestUsernsKnownMappingIsSpecconvs(t *testing.T) {
	rt, _ := newRuntime(t)
	ns, err := rt.NewNamespaces("known", rangeA, false)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	cfgJSON := func(known bool) string {
		s := Spec{ID: "known", Rootfs: "/nonexistent", UserNS: ns.UserPath(), Workspace: "/ws", WorkspaceIDMap: true,
			Mounts: []Mount{{Source: "/c", Target: "/c", IDMap: true}, {Source: "/d", Target: "/d"}}}
		if err := s.validate(); err != nil {
			t.Fatal(err)
		}
		spec, err := ociSpec(&s, "/", "/files", "/init")
		if err != nil {
			t.Fatal(err)
		}
		fix := func(*configs.Config) {}
		if known {
			fix = rt.knownMapping(spec, s.UserNS)
		}
		cfg, err := libcontainerConfig(&s, spec)
		if err != nil {
			t.Fatal(err)
		}
		fix(cfg)
		b, err := json.MarshalIndent(cfg, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	slow, fast := cfgJSON(false), cfgJSON(true)
	if fast != slow {
		t.Errorf("config with the known mapping:\n%s\nspecconv's:\n%s", fast, slow)
	}
	if !strings.Contains(fast, ns.UserPath()) {
		t.Errorf("config does not name the namespace: %s", fast)
	}
}

// TestUsernsHostNetwork: a job in a user namespace with the host's
// network (network = "host") starts, its /sys the host's bound in, and
// sees the host's interfaces.
func TestUsernsHostNetwork(t *testing.T) {
	rt, _ := newRuntime(t)
	ns, rfs := jobNS(t, rt, "userns-hostnet", rangeA, false, rootfs(t))
	c := start(t, rt, Spec{ID: "userns-hostnet", Rootfs: rfs, UserNS: ns.UserPath(), Network: "host"})
	exit, out, errOut := sh(t, c, Process{}, `ls /sys/class/net`)
	if !exit.Success() {
		t.Fatalf("%s: %s", exit, errOut)
	}
	// The host's default route's interface, which other tests leave be.
	routes, err := os.ReadFile("/proc/net/route")
	if err != nil {
		t.Fatal(err)
	}
	uplink := ""
	for _, l := range strings.Split(string(routes), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == "00000000" {
			uplink = f[0]
			break
		}
	}
	if uplink == "" {
		uplink = "lo" // a host without a default route: weaker, still the host's
	}
	if !slices.Contains(strings.Fields(out), uplink) {
		t.Errorf("the job sees interfaces %q, not the host's %s", out, uplink)
	}
}

// TestUsernsStepsNeverHoldSysAdmin: the launcher of a job in a user
// namespace loads the seccomp filter with CAP_SYS_ADMIN and drops it
// before any step: the launcher and every step hold exactly the
// capabilities a job without a user namespace holds (the control), and
// the filter is in place. (A building container's root steps differ by
// design: they are root of a user namespace nested in the job's, with
// every capability there and none more over the job's namespaces; see
// TestBuilderStepsNeverHoldSysAdmin.)
func TestUsernsStepsNeverHoldSysAdmin(t *testing.T) {
	rt, _ := newRuntime(t)
	root := rootfs(t)
	ns, rfs := jobNS(t, rt, "userns-caps", rangeA, false, root)
	script := `for p in 1 self; do grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|Seccomp):' /proc/$p/status; done`
	var outs []string
	for _, s := range []Spec{
		{ID: "userns-caps", Rootfs: rfs, UserNS: ns.UserPath()},
		{ID: "userns-caps-off", Rootfs: root},
	} {
		c := start(t, rt, s)
		exit, out, errOut := sh(t, c, Process{}, script)
		if !exit.Success() {
			t.Fatalf("%s: %s: %s", s.ID, exit, errOut)
		}
		outs = append(outs, out)
		if strings.Contains(out, "Seccomp:\t0") {
			t.Errorf("%s: a process without the filter:\n%s", s.ID, out)
		}
	}
	if outs[0] != outs[1] {
		t.Errorf("in a user namespace:\n%s\nwithout:\n%s", outs[0], outs[1])
	}
	if !strings.Contains(outs[0], "CapBnd:\t00000000a80405fb") {
		t.Errorf("bounding set:\n%s", outs[0])
	}
}

// TestUsernsRootUnderPrivateDir: a job's root in a directory its range
// cannot traverse (a state dir under a 0700 home) still starts: the
// Runtime binds it where the range can reach it, and takes the bind off
// with the container.
func TestUsernsRootUnderPrivateDir(t *testing.T) {
	rt, _ := newRuntime(t)
	ns, err := rt.NewNamespaces("userns-private", rangeA, false)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	private := t.TempDir()
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	o, err := idmap.NewOverlay(ns.Userns(), []string{rootfs(t)}, filepath.Join(private, "snap"))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Remove()
	c, err := rt.Start(context.Background(), Spec{ID: "userns-private", Rootfs: o.Rootfs(), UserNS: ns.UserPath()})
	if err != nil {
		t.Fatal(err)
	}
	exit, out, _ := sh(t, c, Process{}, `echo x > /tmp/x && id -u`)
	if !exit.Success() || out != "0\n" {
		t.Errorf("%s %q", exit, out)
	}
	if err := c.Destroy(); err != nil {
		t.Fatal(err)
	}
	// The root is untouched by the teardown of its bind.
	if b, err := os.ReadFile(filepath.Join(o.Rootfs(), "tmp/x")); err != nil || string(b) != "x\n" {
		t.Errorf("root after destroy: %q, %v", b, err)
	}
}
