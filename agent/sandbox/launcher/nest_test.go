package launcher_test

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/agent/sandbox/internal/wire"
	"golang.org/x/sys/unix"
)

// TestNestedStepHasItsOwnUserAndMountNamespace: a step with Nest runs as
// root of a new user namespace whose maps are the identity over the
// launcher's ids, with all capabilities there and a mount namespace of its
// own (a tmpfs it mounts is not seen by the next step); a step without
// Nest, the control, stays in the launcher's namespaces. (The launcher
// runs on the host here: its ids are all of them.)
func TestNestedStepHasItsOwnUserAndMountNamespace(t *testing.T) {
	bin := build(t)
	l := ready(t, bin)
	ns := func(name string) string {
		s, err := os.Readlink("/proc/self/ns/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	hostUser, hostMnt := ns("user"), ns("mnt")
	idmap := func(name string) string {
		b, err := os.ReadFile("/proc/self/" + name)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
			f := strings.Fields(line)
			out = append(out, f[0]+" "+f[0]+" "+f[2])
		}
		return strings.Join(out, "\n") + "\n"
	}
	dir := t.TempDir()
	script := `readlink /proc/self/ns/user /proc/self/ns/mnt; id -u; id -g; grep CapEff /proc/self/status
		awk '{print $1, $2, $3}' /proc/self/uid_map /proc/self/gid_map
		mount -t tmpfs nested ` + dir + ` && grep -c " ` + dir + ` " /proc/self/mountinfo`
	nested := sh(script)
	nested.Nest = true
	ws, out, errOut, failed := l.run(t, nested)
	lines := strings.SplitN(out, "\n", 6)
	if failed != "" || ws.ExitStatus() != 0 || len(lines) < 6 {
		t.Fatalf("nested step: %v %q %q %s", ws, out, errOut, failed)
	}
	if lines[0] == hostUser || lines[1] == hostMnt {
		t.Errorf("nested step's namespaces %s %s, want new ones (the launcher's: %s %s)", lines[0], lines[1], hostUser, hostMnt)
	}
	if lines[2] != "0" || lines[3] != "0" || lines[4] != "CapEff:\t000001ffffffffff" {
		t.Errorf("nested step's ids and capabilities: %q, want root with all", lines[2:5])
	}
	if want := idmap("uid_map") + idmap("gid_map") + "1\n"; lines[5] != want {
		t.Errorf("nested step's maps and mount: %q, want %q", lines[5], want)
	}
	// The control: not nested, the launcher's namespaces; and the
	// nested step's tmpfs went with its mount namespace.
	ws, out, _, failed = l.run(t, sh(`readlink /proc/self/ns/user /proc/self/ns/mnt; grep -c " `+dir+` " /proc/self/mountinfo`))
	if want := hostUser + "\n" + hostMnt + "\n0\n"; out != want {
		t.Errorf("step without Nest: %v %q %s, want %q", ws, out, failed, want)
	}
}

// TestNestedStepFailsWhenNestingFails: a step whose user namespace
// cannot be made (a seccomp filter refuses clone with CLONE_NEWUSER)
// fails with an error that says so; it never runs un-nested. The same
// step without Nest, the control, runs under that filter.
func TestNestedStepFailsWhenNestingFails(t *testing.T) {
	bin := build(t)
	// Classic BPF: clone with CLONE_NEWUSER in its flags gets EPERM,
	// everything else is allowed.
	ins := func(code uint16, jt, jf uint8, k uint32) []byte {
		b := binary.LittleEndian.AppendUint16(nil, code)
		b = append(b, jt, jf)
		return binary.LittleEndian.AppendUint32(b, k)
	}
	var prog []byte
	prog = append(prog, ins(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 0, 0, 0)...)                             // nr
	prog = append(prog, ins(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, 0, 2, unix.SYS_CLONE)...)               // clone?
	prog = append(prog, ins(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 0, 0, 16)...)                            // args[0], low half
	prog = append(prog, ins(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, 1, 0, unix.CLONE_NEWUSER)...)          // CLONE_NEWUSER?
	prog = append(prog, ins(unix.BPF_RET|unix.BPF_K, 0, 0, unix.SECCOMP_RET_ALLOW)...)                    // allow
	prog = append(prog, ins(unix.BPF_RET|unix.BPF_K, 0, 0, unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM))...) // EPERM
	l, answer := startLauncher(t, bin, append([]byte{wire.Setup}, (&wire.Filter{Program: prog}).Marshal()...))
	if string(answer) != string(wire.Ready) {
		t.Fatalf("answer to setup: %q", answer)
	}
	nested := sh(`echo ran`)
	nested.Nest = true
	ws, out, _, failed := l.run(t, nested)
	if want := "start step in a nested user namespace: new user namespace: operation not permitted"; failed != want || out != "" {
		t.Errorf("nested step under a filter refusing user namespaces: %v %q %q, want %q", ws, out, failed, want)
	}
	if ws, out, _, failed := l.run(t, sh(`echo ran`)); failed != "" || ws.ExitStatus() != 0 || out != "ran\n" {
		t.Errorf("step without Nest under that filter: %v %q %s", ws, out, failed)
	}
}
