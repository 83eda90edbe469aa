package network

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/testenv"
)

// rangeBase is the host id the test's user namespaces map their 0 onto,
// as a job's id range would (65536 ids).
const rangeBase = 300000

// userNet makes, the way the product's sandbox does, a user namespace
// mapping 0-65535 onto rangeBase and a network namespace owned by it: a
// child cloned with CLONE_NEWUSER|CLONE_NEWNET, both its namespaces bound
// (nsfs) at dir/user and dir/net, then the child ends. The test removes
// them and dir (rmUserNet); a failed test's are removed at its end.
func userNet(t *testing.T, dir string) (user, net string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	user, net = filepath.Join(dir, "user"), filepath.Join(dir, "net")
	cmd := exec.Command("/bin/cat")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: rangeBase, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: rangeBase, Size: 65536}},
		// A job's root may call setgroups, as nsenter does.
		GidMappingsEnableSetgroups: true,
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("clone a child in a new user and network namespace: %v", err)
	}
	defer func() { in.Close(); cmd.Wait() }()
	t.Cleanup(func() { rmUserNet(t, dir) })
	for _, b := range []struct{ ns, at string }{{"user", user}, {"net", net}} {
		if err := os.WriteFile(b.at, nil, 0o444); err != nil {
			t.Fatal(err)
		}
		from := fmt.Sprintf("/proc/%d/ns/%s", cmd.Process.Pid, b.ns)
		if err := unix.Mount(from, b.at, "", unix.MS_BIND, ""); err != nil {
			t.Fatalf("bind %s on %s: %v", from, b.at, err)
		}
	}
	return user, net
}

// rmUserNet unmounts and removes what userNet made in dir, and dir; done
// twice it does nothing.
func rmUserNet(t *testing.T, dir string) {
	t.Helper()
	for _, p := range []string{"user", "net"} {
		if err := removeNetNS(filepath.Join(dir, p)); err != nil {
			t.Error(err)
		}
	}
	if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
		t.Error(err)
	}
}

// sameNS reports whether the namespace files a and b are one namespace.
func sameNS(t *testing.T, a, b string) bool {
	t.Helper()
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(b, &sb); err != nil {
		t.Fatal(err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// ownerIs reports whether the user namespace that owns the network
// namespace at netns (NS_GET_USERNS on it) is the one at user.
func ownerIs(t *testing.T, netns, user string) bool {
	t.Helper()
	fd, err := unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	owner, err := unix.IoctlRetInt(fd, unix.NS_GET_USERNS)
	if err != nil {
		t.Fatalf("NS_GET_USERNS on %s: %v", netns, err)
	}
	defer unix.Close(owner)
	return sameNS(t, fmt.Sprintf("/proc/self/fd/%d", owner), user)
}

// sysctls reads the two sysctls a job's namespace gets, in the namespace
// at netns (the host's if "").
func sysctls(t *testing.T, netns string) (port, ping string) {
	t.Helper()
	read := func() error {
		p, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
		if err != nil {
			return err
		}
		g, err := os.ReadFile("/proc/sys/net/ipv4/ping_group_range")
		port, ping = strings.TrimSpace(string(p)), strings.Join(strings.Fields(string(g)), " ")
		return err
	}
	var err error
	if netns == "" {
		err = read()
	} else {
		err = inNetNS(netns, read)
	}
	if err != nil {
		t.Fatal(err)
	}
	return port, ping
}

// checkSysctls fails t unless the namespace at netns has Docker's
// unprivileged port start and ping group range, and the host's, which
// must differ from those (else the check proves nothing), are what they
// were before (hostPort, hostPing).
func checkSysctls(t *testing.T, netns, hostPort, hostPing string) {
	t.Helper()
	if hostPort == "0" || hostPing == "0 2147483647" {
		t.Fatalf("positive control: the host's own sysctls are already a job's (%s, %q): the test cannot tell where they were set", hostPort, hostPing)
	}
	if port, ping := sysctls(t, netns); port != "0" || ping != "0 2147483647" {
		t.Errorf("in the job's namespace: ip_unprivileged_port_start %s, ping_group_range %q; want 0 and \"0 2147483647\"", port, ping)
	}
	if port, ping := sysctls(t, ""); port != hostPort || ping != hostPing {
		t.Errorf("the host's sysctls changed: ip_unprivileged_port_start %s, ping_group_range %q; were %s, %q", port, ping, hostPort, hostPing)
	}
}

// inUserNet runs args as the root (or uid:gid, if not "") of the user
// namespace at user, in the network namespace at netns, and returns its
// combined output and whether it succeeded. The network namespace is
// joined first, as the host's root, then the user namespace, so that the
// pair need not be related: that makes the controls below possible.
func inUserNet(t *testing.T, user, netns, uid string, args ...string) (string, bool) {
	t.Helper()
	nsenter := testenv.RequireTool(t, "nsenter")
	inner := []string{"--user=" + user}
	if uid != "" {
		inner = append(inner, "--setuid="+uid, "--setgid="+uid)
	}
	full := append([]string{"--net=" + netns, "--", nsenter}, inner...)
	full = append(append(full, "--"), args...)
	out, err := exec.Command(nsenter, full...).CombinedOutput()
	t.Logf("%v: %v\n%s", args, err, out)
	return string(out), err == nil
}

// mountSysfs is what a container's runtime does in the job's namespaces:
// a new mount namespace with a fresh sysfs on /sys; it lists the links
// that sysfs shows.
var mountSysfs = []string{"unshare", "--mount", "--", "/bin/sh", "-c",
	"mount -t sysfs -o nosuid,nodev,noexec sysfs /sys && ls /sys/class/net"}

// TestSetupInJobUserns: in a network namespace owned by the job's user
// namespace (as the product makes it), SetupIn gives the job the network
// Setup gives: its address answers, egress through the bridge works, the
// host's addresses (the gateway's and loopback's) stay unreachable; the
// namespace gets Docker's sysctls and the host keeps its own; the job's
// root can mount a sysfs of the namespace, which it cannot for one owned
// by the host's user namespace (Setup's: the EPERM of issue 17); a
// non-root user of the job binds port 80 and pings. Teardown leaves the caller's
// namespaces, and nothing else: no address in them, no veth, no rule,
// no lease.
func TestSetupInJobUserns(t *testing.T) {
	f := newFixture(t)
	hostPort, hostPing := sysctls(t, "")
	nsDir := filepath.Join(f.dir, "ns")
	if err := os.MkdirAll(nsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	all := leakcheck.Take(t, nsDir)
	inet, inetAddr := internet(t)
	out := serve(t, inet, inetAddr.String()+":0")
	host := serve(t, "", "0.0.0.0:0")
	m := f.manager(nil)

	jobNS := filepath.Join(nsDir, "job")
	user, netns := userNet(t, jobNS)
	if !ownerIs(t, netns, user) {
		t.Fatalf("the network namespace at %s is not owned by the user namespace at %s", netns, user)
	}
	given := leakcheck.Take(t, nsDir)
	n, err := m.SetupIn(t.Context(), fmt.Sprintf("uns-%x", rand.Uint32()), netns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Teardown() })
	if n.Path != netns {
		t.Errorf("Net.Path %s, want the namespace given, %s", n.Path, netns)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "network", n.id, "netns")); err == nil {
		t.Error("SetupIn made a namespace of its own as well")
	}

	// The job's address answers, from the host and from the job.
	job := serve(t, n.Path, "0.0.0.0:0")
	at := netip.AddrPortFrom(n.Addr, job.Port())
	if !hostConnect(t, at) {
		t.Errorf("the job's server at its address %s does not answer the host", at)
	}
	if err := n.Probe(t.Context(), int(job.Port())); err != nil {
		t.Errorf("Probe (a service's readiness) of the job's server: %v", err)
	}
	c := f.job(n)
	if !connect(t, c, at) {
		t.Errorf("the job's server at its address %s does not answer the job", at)
	}
	// Egress through the bridge and NAT.
	if !connect(t, c, out) {
		t.Errorf("the job could not reach %s in the test's internet namespace", out)
	}
	// The host: unreachable at the gateway, and at 127.0.0.1 the job
	// has its own loopback (positive control: the host reaches both).
	for _, ip := range []netip.Addr{n.Gateway, netip.MustParseAddr("127.0.0.1")} {
		to := netip.AddrPortFrom(ip, host.Port())
		if !hostConnect(t, to) {
			t.Errorf("positive control: the host itself cannot reach its server at %s", to)
			continue
		}
		if connect(t, c, to) {
			t.Errorf("the job reached the host's server at %s", to)
		}
	}

	checkSysctls(t, n.Path, hostPort, hostPing)

	// A sysfs of the namespace: the job's root may mount it, and it
	// shows the job's links, not the host's.
	if o, ok := inUserNet(t, user, n.Path, "", mountSysfs...); !ok {
		t.Errorf("the job's root cannot mount a sysfs of the job's network namespace: %s", o)
	} else if links := strings.Fields(o); !slices.Equal(links, []string{"eth0", "lo"}) {
		t.Errorf("the fresh sysfs shows the links %v, want the job's eth0 and lo", links)
	}
	// The control: a namespace owned by the host's user namespace.
	own := f.setup(m)
	if ownerIs(t, own.Path, user) || !ownerIs(t, own.Path, "/proc/self/ns/user") {
		t.Fatalf("control: Setup's namespace %s is not owned by the host's user namespace", own.Path)
	}
	if o, ok := inUserNet(t, user, own.Path, "", mountSysfs...); ok || !strings.Contains(o, "ermission") {
		t.Errorf("control: the job's root mounted a sysfs of a network namespace the host's user namespace owns (or failed otherwise): %s", o)
	}

	// A non-root user of the job binds port 80 and opens an ICMP echo
	// socket (ping without CAP_NET_RAW). The control: neither in a
	// namespace with the kernel's defaults.
	bin := probeBinary(t)
	for _, p := range []string{"bind80", "icmp"} {
		if _, ok := inUserNet(t, user, n.Path, "1000", "env", probeEnv+"="+p, bin); !ok {
			t.Errorf("user 1000 of the job: %s fails in the job's namespace", p)
		}
		if _, ok := inUserNet(t, user, inet, "1000", "env", probeEnv+"="+p, bin); ok {
			t.Errorf("control: user 1000 of the job: %s works in a namespace without the job's sysctls", p)
		}
	}

	if err := c.Destroy(); err != nil {
		t.Fatal(err)
	}
	veth := vethName(m.tag, n.id)
	if err := n.Teardown(); err != nil {
		t.Fatal(err)
	}
	// Unreachable at once (the server in the namespace still listens),
	// and the veth pair deleted (the caller's namespace lives on: not by
	// the kernel with it).
	if hostConnect(t, at) {
		t.Errorf("the job's address %s still answers after Teardown", at)
	}
	if !waitNoLink(veth) {
		t.Errorf("veth %s left after Teardown", veth)
	}
	if !ownerIs(t, netns, user) {
		t.Error("the caller's network namespace is gone after Teardown")
	}
	given.Check(t)
	if _, err := os.Stat(filepath.Join(f.dir, "network", n.id)); err == nil {
		t.Error("job directory left after Teardown")
	}
	rmUserNet(t, jobNS)
	all.Check(t)
}

// TestSetupInSameIDAfterTeardown: a job of the same id (so the same veth
// name) set up in another namespace right after Teardown, while the old
// pair is being deleted in the background, keeps its own pair, and
// reaches the internet stand-in.
func TestSetupInSameIDAfterTeardown(t *testing.T) {
	f := newFixture(t)
	m := f.manager(nil)
	inet, inetAddr := internet(t)
	out := serve(t, inet, inetAddr.String()+":0")
	dir := filepath.Join(t.TempDir(), "ns")
	var old int
	for i := range 2 {
		_, netns := userNet(t, filepath.Join(dir, fmt.Sprint(i)))
		n, err := m.SetupIn(t.Context(), "again", netns)
		if err != nil {
			t.Fatalf("SetupIn %d: %v", i, err)
		}
		l, err := netlink.LinkByName(vethName(m.tag, "again"))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			old = l.Attrs().Index
			if err := n.Teardown(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		defer n.Teardown()
		m.unlinking.Wait()
		if l, err := netlink.LinkByName(vethName(m.tag, "again")); err != nil || l.Attrs().Index == old {
			t.Fatalf("the new job's veth after the old one's deletion: %v, %v (old index %d)", l, err, old)
		}
		c := f.job(n)
		if !connect(t, c, out) {
			t.Errorf("the new job cannot reach %s", out)
		}
		if err := c.Destroy(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSetupSysctls: Setup's own namespace gets Docker's sysctls too, and
// the host keeps its own.
func TestSetupSysctls(t *testing.T) {
	f := newFixture(t)
	hostPort, hostPing := sysctls(t, "")
	n := f.setup(f.manager(nil))
	checkSysctls(t, n.Path, hostPort, hostPing)
}

// TestSetupInRefuses: SetupIn refuses, with an error naming the path and
// leaving nothing, what is not an unused network namespace of its own: a
// plain file, a user namespace, the host's network namespace, a network
// namespace with a link up in it, or one with an address. The positive control: a new one works,
// also with a link in it that is down and has no address, as the
// fallback devices of tunnel modules are.
func TestSetupInRefuses(t *testing.T) {
	f := newFixture(t)
	m := f.manager(nil)
	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	busy, _ := internet(t)
	addressed := filepath.Join(t.TempDir(), "addressed")
	if err := makeNetNS(addressed); err != nil {
		t.Fatal(err)
	}
	defer removeNetNS(addressed)
	if err := inNetNS(addressed, func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "old0"}, PeerName: "old1"}); err != nil {
			return err
		}
		l, err := netlink.LinkByName("old0")
		if err != nil {
			return err
		}
		return netlink.AddrAdd(l, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix("198.18.252.1/24"))})
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{plain, "is not a network namespace"},
		{"/proc/self/ns/user", "is not a network namespace"},
		{"/proc/self/ns/net", "is the host's own"},
		{busy, "is in use: its link eth0 is up"},
		{addressed, "is in use: its link old0 has the address 198.18.252.1/24"},
		{"relative/net", "want an absolute path"},
		{filepath.Join(t.TempDir(), "missing"), "no such file"},
	} {
		_, err := m.SetupIn(t.Context(), "refused", c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
			t.Errorf("SetupIn on %s: %v, want an error naming it and saying %q", c.path, err, c.want)
		}
	}
	if _, err := m.SetupIn(t.Context(), "refused", ""); err == nil {
		t.Error("SetupIn without a namespace: no error")
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := makeNetNS(empty); err != nil {
		t.Fatal(err)
	}
	defer removeNetNS(empty)
	ns, err := netns.GetFromPath(empty)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tunl0"}, PeerName: "sit0"}); err != nil {
		t.Fatal(err)
	}
	n, err := m.SetupIn(t.Context(), "refused", empty)
	if err != nil {
		t.Fatalf("positive control: SetupIn on an empty namespace: %v", err)
	}
	if err := n.Teardown(); err != nil {
		t.Fatal(err)
	}
}

// TestCleanupSetupInAfterCrash: a process killed with a job's network up
// in a namespace it was given leaves the veth, rules and lease; Cleanup
// removes them and the job's address from the namespace, which it leaves
// to its caller. With the caller's namespace already gone (its clean-up
// came first), Cleanup still removes the rest without error.
func TestCleanupSetupInAfterCrash(t *testing.T) {
	f := newFixture(t)
	m := f.manager(nil)
	nsDir := filepath.Join(f.dir, "ns")
	if err := os.MkdirAll(nsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	all := leakcheck.Take(t, nsDir)
	veth := vethName(m.tag, "crashed")
	for _, keep := range []bool{true, false} {
		jobNS := filepath.Join(nsDir, "job")
		user, netns := userNet(t, jobNS)
		given := leakcheck.Take(t, nsDir)
		cmd := startHelper(t, f.dir, helperNetNSEnv+"="+netns)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if !hasLink(veth) {
			t.Fatal("the killed process left no veth: the test proves nothing")
		}
		if rules, _ := m.JobRules(RuleComment(m.tag, "crashed")); len(rules) == 0 {
			t.Fatal("the killed process left no rules: the test proves nothing")
		}
		if !keep {
			rmUserNet(t, jobNS)
		}
		if err := m.Cleanup(t.Context()); err != nil {
			t.Fatalf("Cleanup (caller's namespace kept: %v): %v", keep, err)
		}
		if keep {
			if hasLink(veth) {
				t.Errorf("veth %s left after Cleanup", veth)
			}
			if !ownerIs(t, netns, user) {
				t.Error("Cleanup removed the caller's network namespace")
			}
			given.Check(t)
			rmUserNet(t, jobNS)
		} else if !waitNoLink(veth) {
			t.Errorf("veth %s left after Cleanup", veth)
		}
		ls, _ := readLeases(m.leaseFile())
		if _, ok := ls.find("crashed"); ok {
			t.Error("lease left after Cleanup")
		}
		if rules, _ := m.JobRules(RuleComment(m.tag, "crashed")); len(rules) != 0 {
			t.Errorf("rules left after Cleanup: %v", rules)
		}
	}
	all.Check(t)
}

// probeEnv makes the test binary try what a job's sysctls allow an
// unprivileged process, and exit 0 if it may: "bind80" (a TCP listener on
// port 80) or "icmp" (an ICMP echo socket, which ping without CAP_NET_RAW
// uses).
const probeEnv = "JOBRUN_NETWORK_TEST_PROBE"

func probe(what string) int {
	var err error
	switch what {
	case "bind80":
		var ln net.Listener
		if ln, err = net.Listen("tcp4", "0.0.0.0:80"); err == nil {
			ln.Close()
		}
	case "icmp":
		var fd int
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP); err == nil {
			unix.Close(fd)
		}
	default:
		err = fmt.Errorf("unknown probe %q", what)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe %s as uid %d: %v\n", what, os.Getuid(), err)
		return 1
	}
	fmt.Printf("probe %s as uid %d: ok\n", what, os.Getuid())
	return 0
}

// probeBinary copies the test binary where any user may run it (the
// build's own dir is root's only), for the probes above.
func probeBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "network-probe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "probe")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
