package main

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobrun/jobrun/internal/testenv"
)

// TestRootlessEscapes is the escape battery of a job run without root
// (issue #18, "Tests"). The job's root is the user's own uid on the host,
// so the user's files, processes and namespaces are its to take by
// permission alone: only what it can name stops it. Each negative has its
// positive control.
//
//   - The user's files: a 0600 file in the user's home is reached by no
//     path of the job's: a walk of the job's whole tree from the host
//     (/proc/PID/root, every mount of the job's) never meets its inode,
//     and every cwd, root and open file of every process of the job's is
//     in that tree (nothing inherited from jobrun, which runs in the
//     user's project directory). From inside: symbolic links the user
//     left in the workspace (absolute, and ../ out of it) and `..` from
//     /workspace resolve in the image. Controls: the walk finds the
//     workspace's files and the image's; the links reach the file on the
//     host; the job reads its workspace.
//   - The user's capabilities: the job cannot name any namespace outside
//     its own (NS_GET_PARENT on its user namespace is refused, every
//     namespace it holds is owned by it), sees no process of the host's
//     (not jobrun, not its starter, not the user's shell) and cannot signal
//     one (kill -9 -1 leaves the user's host process alive). Controls: root
//     on the host gets the parent namespace with the same probe; the job
//     signals its own processes; the user kills their process.
//   - Even handed open files of the host's initial user and network
//     namespaces (SCM_RIGHTS over a socket in its /tmp), the job cannot
//     join them: setns is refused (EPERM) for both. Control: root on the
//     host joins the job's namespaces with the same calls.
//   - The sandbox's battery (agent/sandbox/escape_test.go's probes: mount,
//     mknod, a user namespace, a kernel module, a host pid, ptrace, /proc
//     writes and masked paths), each refused with its exact errno in the
//     job. Control: the same probe run by root on the host succeeds.
func TestRootlessEscapes(t *testing.T) {
	u := newRLUser(t, true)
	secret := filepath.Join(u.home, "secret.txt")
	if err := os.WriteFile(secret, []byte("TOPSECRET-escape\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(secret, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
	var sst syscall.Stat_t
	if err := syscall.Stat(secret, &sst); err != nil {
		t.Fatal(err)
	}

	file := u.write(t, `
job "escape" {
  image = "IMAGE"
  network = "none"
  step "files" {
    run = <<-SH
    cat .ci.hcl >/dev/null && echo workspace-read
    cat leak-abs 2>/dev/null || echo leak-abs-refused
    cat leak-rel 2>/dev/null || echo leak-rel-refused
    ln -s ../../../.. up && ls up/ | tr '\n' ' ' && echo
    cd /workspace/../../../.. && echo dotdot=$(pwd) && test ! -e HOME && echo home-absent
    for p in /proc/[0-9]*; do for q in root$HOME/secret.txt cwd/../secret.txt cwd/../../secret.txt; do test -e $p/$q && echo REACHED $p/$q; done; done
    echo files-done
  SH
  }
  step "ns" {
    run = <<-SH
    echo parent=$(./rlprobe parent /proc/self/ns/user)
    echo owners=$(./rlprobe owners)
    echo procs=$(ls -d /proc/[0-9]* | wc -l)
    sleep 4303 &
    for p in /proc/[0-9]*; do echo "proc $(tr '\0' ' ' < $p/cmdline)"; done
    kill -0 $! && echo own-signalled; kill $!
    kill -0 VICTIM 2>/dev/null && echo VICTIM-SIGNALLED || echo victim-unknown
    echo ns-done
  SH
  }
  step "battery" {
    run = <<-SH
BATTERY
    SH
  }
  step "handle" { run = "./rlprobe handle /tmp/jrl.sock" }
  step "hold" { run = "echo holding; sleep 4301; echo held" }
  step "killall" {
    run = "(kill -9 -1); echo survived"
    allow_failure = true
  }
}
`)
	// The user's links to the file, which the job finds in its workspace,
	// and the probe.
	for name, target := range map[string]string{"leak-abs": secret, "leak-rel": "../secret.txt"} {
		p := filepath.Join(u.project, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		os.Lchown(p, u.uid, u.gid)
		// Control: on the host, the link reaches the file.
		if b, err := os.ReadFile(p); err != nil || !strings.Contains(string(b), "TOPSECRET") {
			t.Fatalf("control: %s does not reach the file on the host: %v", name, err)
		}
	}
	probe := filepath.Join(u.project, "rlprobe")
	sbProbe := filepath.Join(u.project, "probe")
	for bin, pkg := range map[string]string{probe: "./testdata/rlprobe", sbProbe: "../../agent/sandbox/internal/probe"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
		os.Chown(bin, u.uid, u.gid)
	}

	// A process of the user's on the host, which the job must neither see
	// nor signal.
	victim := exec.Command("sleep", "4302")
	victim.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), Groups: []uint32{}}}
	waitVictim, err := testenv.StartChild(victim)
	if err != nil {
		t.Fatal(err)
	}
	vpid := victim.Process.Pid
	t.Cleanup(func() {
		victim.Process.Kill()
		waitVictim()
	})
	battery := escapeBattery(t, vpid)
	var lines []string
	for _, p := range battery {
		lines = append(lines, fmt.Sprintf(`echo "probe %s=$(./probe %s)"`, p.name, p.args))
	}
	b, _ := os.ReadFile(file)
	b = []byte(strings.Replace(string(b), "BATTERY", strings.Join(lines, "\n"), 1))
	script := strings.ReplaceAll(strings.ReplaceAll(string(b), "kill -0 VICTIM", "kill -0 "+strconv.Itoa(vpid)), "HOME", u.home)
	// $HOME in the job is the image's; the literal is the user's home.
	script = strings.ReplaceAll(script, "$"+u.home, u.home)
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}

	run := u.start(t, nil, u.localArgs(file)...)
	run.waitOut(t, "| waiting-for-handle")
	handOver(t)
	run.waitOut(t, "| holding")
	pid, uid := waitSleep(t, "4301", 60*time.Second)
	if pid == 0 {
		t.Fatal("no sleep 4301 seen from the host")
	}
	// The premise: the job's root is the user on the host, so permissions
	// would not stop it.
	if uid != u.uid {
		t.Errorf("the job runs as host uid %d, want the user's %d", uid, u.uid)
	}
	checkJobTree(t, pid, sst)
	// Control of the job's NS_GET_PARENT: root on the host gets the
	// parent of the job's user namespace.
	if out, err := exec.Command(probe, "parent", fmt.Sprintf("/proc/%d/ns/user", pid)).Output(); err != nil || !regexpDigits(strings.TrimSpace(string(out))) {
		t.Errorf("control: root's NS_GET_PARENT on the job's user namespace: %q, %v", out, err)
	}
	// Control of the job's setns: root on the host joins the job's
	// network namespace, and its user namespace, with the same calls.
	if out, err := exec.Command(probe, "setns-net", fmt.Sprintf("/proc/%d/ns/net", pid)).Output(); err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("control: root's setns to the job's network namespace: %q, %v", out, err)
	}
	if out, err := exec.Command("busybox", "nsenter", fmt.Sprintf("--user=/proc/%d/ns/user", pid), "true").CombinedOutput(); err != nil {
		t.Errorf("control: root's nsenter to the job's user namespace: %v %s", err, out)
	}
	syscall.Kill(pid, syscall.SIGTERM)
	r := run.end(t)
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	for _, want := range []string{"workspace-read", "leak-abs-refused", "leak-rel-refused", "dotdot=/", "home-absent", "files-done",
		"parent=EPERM", "proc sleep 4303", "| handle: setns-net=EPERM setns-user=EPERM", "own-signalled", "victim-unknown", "ns-done", "killall"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("no %q in the job's output", want)
		}
	}
	// The sandbox's battery (agent/sandbox/escape_test.go), as the user:
	// each refused in the job; the control, the same probe run by root
	// on the host, is not.
	for _, p := range battery {
		m := regexp.MustCompile(`\| probe ` + regexp.QuoteMeta(p.name) + `=(.*)\n`).FindStringSubmatch(r.out)
		if m == nil || m[1] != p.job {
			t.Errorf("probe %s in the job: %v, want %q", p.name, m, p.job)
		}
		ctl := exec.Command(sbProbe, strings.Fields(strings.ReplaceAll(p.args, "/tmp/blk", filepath.Join(t.TempDir(), "blk")))...)
		out, err := ctl.Output()
		if got := strings.TrimSpace(string(out)); err != nil || got == p.job || strings.Contains(got, "EPERM") || strings.Contains(got, "error") {
			t.Errorf("control: probe %s by root on the host: %q, %v", p.name, got, err)
		}
	}
	if strings.Contains(r.out, "TOPSECRET") {
		t.Error("the secret's content in the job's output")
	}
	// Lines the job printed (the script's own text is in the output too,
	// listed from /proc).
	for _, bad := range []string{"REACHED", "VICTIM-SIGNALLED", "survived"} {
		if strings.Contains(r.out, "| "+bad) {
			t.Errorf("%q in the job's output", bad)
		}
	}
	// The namespaces the job holds are its own, or the kernel will not
	// say whose (the time namespace is the host's, as with runc): none
	// names a user namespace outside the job's.
	if m := regexp.MustCompile(`\| owners=own:(\S+)( refused:\S+)?\n`).FindStringSubmatch(r.out); m == nil {
		t.Errorf("the job holds a namespace of a user namespace it can name, not its own")
	} else {
		for _, ns := range []string{"mnt", "pid", "net", "ipc", "uts"} {
			if !slices.Contains(strings.Split(m[1], ","), ns) {
				t.Errorf("the job's %s namespace is not its own: %s", ns, m[0])
			}
		}
	}
	// It sees its own processes, and none of the host's: not jobrun or
	// its starter (both run from u.bin), nor the user's sleep.
	for _, l := range regexp.MustCompile(`\| proc (.*)`).FindAllStringSubmatch(r.out, -1) {
		if strings.Contains(l[1], u.bin) || strings.Contains(l[1], "4302") {
			t.Errorf("the job sees a process of the host's: %s", l[1])
		}
	}
	if !strings.Contains(r.out, "| bin ") || strings.Contains(r.out, "| home/"+u.name) {
		t.Errorf("`..` out of the workspace is not the image's root")
	}
	// The user's process lived through the job's kill -9 -1; the user
	// kills it (the control: it was killable, by the user).
	if err := syscall.Kill(vpid, 0); err != nil {
		t.Errorf("the user's process died during the job: %v", err)
	}
	kill := exec.Command("kill", strconv.Itoa(vpid))
	kill.SysProcAttr = victim.SysProcAttr
	if out, err := kill.CombinedOutput(); err != nil {
		t.Errorf("control: the user cannot kill their own process: %v %s", err, out)
	}
}

// regexpDigits reports whether s is a namespace's inode number.
func regexpDigits(s string) bool {
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

// checkJobTree walks the filesystem tree of the job whose process is pid,
// from the host (/proc/PID/root: the job's mounts, not the host's), but
// for /proc and /sys: no file in it is the secret (by device and inode),
// and the cwd, root and every open file or directory of every process
// of the job's pid namespace is in it.
func checkJobTree(t *testing.T, pid int, secret syscall.Stat_t) {
	t.Helper()
	type key struct{ dev, ino uint64 }
	seen := map[key]string{}
	root := fmt.Sprintf("/proc/%d/root", pid)
	err := filepath.WalkDir(root+"/", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a file gone, or a masked path
		}
		rel := strings.TrimPrefix(p, root)
		if rel == "/proc" || rel == "/sys" {
			return fs.SkipDir
		}
		var st syscall.Stat_t
		if syscall.Lstat(p, &st) != nil {
			return nil
		}
		seen[key{st.Dev, st.Ino}] = rel
		if st.Dev == secret.Dev && st.Ino == secret.Ino {
			t.Errorf("the job reaches the user's secret at %s", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Controls: the walk crossed into the image and the workspace.
	for _, p := range []string{"/bin/busybox", "/workspace/.ci.hcl", "/workspace/leak-abs"} {
		found := false
		for _, rel := range seen {
			if rel == p {
				found = true
			}
		}
		if !found {
			t.Errorf("control: the walk of the job's tree did not find %s (%d entries)", p, len(seen))
		}
	}
	// Every process of the job's pid namespace.
	pidns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	ents, _ := os.ReadDir("/proc")
	procs := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if ns, _ := os.Readlink("/proc/" + e.Name() + "/ns/pid"); ns != pidns {
			continue
		}
		procs++
		links := []string{"cwd", "root"}
		fds, _ := os.ReadDir("/proc/" + e.Name() + "/fd")
		for _, fd := range fds {
			links = append(links, "fd/"+fd.Name())
		}
		for _, l := range links {
			p := "/proc/" + e.Name() + "/" + l
			var st syscall.Stat_t
			if syscall.Stat(p, &st) != nil {
				continue // gone
			}
			m := st.Mode & syscall.S_IFMT
			if m != syscall.S_IFDIR && m != syscall.S_IFREG {
				continue // pipes, sockets, devices: no path to walk from
			}
			if _, ok := seen[key{st.Dev, st.Ino}]; !ok {
				target, _ := os.Readlink(p)
				t.Errorf("process %s of the job holds %s -> %s, outside its tree", e.Name(), l, target)
			}
		}
	}
	if procs == 0 {
		t.Error("control: no process found in the job's pid namespace")
	}
}

// escapeProbe is one of the sandbox's probes (agent/sandbox/internal/probe)
// and the word it must print in a job run without root.
type escapeProbe struct{ name, args, job string }

// escapeBattery is agent/sandbox/escape_test.go's battery for a job run
// without root; victim is a process of the user's on the host.
func escapeBattery(t *testing.T, victim int) []escapeProbe {
	b := []escapeProbe{
		{"mount", "mount", "EPERM"},
		{"mknod-block", "mknod-block /tmp/blk", "EPERM"},
		{"unshare-user", "unshare-user", "EPERM"},
		{"module", "module", "finit=EPERM init=EPERM"},
		{"see-host-pid", fmt.Sprintf("stat /proc/%d", victim), "ENOENT"},
		{"ptrace-user-process", fmt.Sprintf("ptrace %d", victim), "ESRCH"},
		{"write-proc-sys", "open-write /proc/sys/kernel/domainname", "EACCES"},
	}
	for _, p := range []string{"/proc/kcore", "/proc/timer_list", "/proc/sysrq-trigger"} {
		if _, err := os.Stat(p); err != nil {
			t.Logf("host has no %s: not probed", p)
			continue
		}
		switch p {
		case "/proc/sysrq-trigger":
			b = append(b, escapeProbe{"write-sysrq-trigger", "open-write " + p, "EACCES"})
		default:
			b = append(b, escapeProbe{"read-masked-" + filepath.Base(p), "read " + p, "eof"})
		}
	}
	return b
}

// handOver gives the job the worst it could hold: open files of the
// host's initial user and network namespaces (this process's, root's),
// sent with SCM_RIGHTS over the unix socket the job's rlprobe listens on
// in its /tmp (reached through its /proc/PID/root).
func handOver(t *testing.T) {
	t.Helper()
	pid := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if strings.HasPrefix(string(b), "./rlprobe\x00handle\x00") {
			pid, _ = strconv.Atoi(e.Name())
		}
	}
	if pid == 0 {
		t.Fatal("no rlprobe waiting for the handles")
	}
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: fmt.Sprintf("/proc/%d/root/tmp/jrl.sock", pid), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var fds []int
	for _, ns := range []string{"user", "net"} {
		f, err := os.Open("/proc/self/ns/" + ns)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fds = append(fds, int(f.Fd()))
	}
	if _, _, err := c.WriteMsgUnix([]byte{0}, syscall.UnixRights(fds...), nil); err != nil {
		t.Fatal(err)
	}
}
