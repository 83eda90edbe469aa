package network

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/owner"
	"github.com/jobrun/jobrun/internal/testenv"
)

// TestOutbound: a job reaches a server in another network namespace (the
// stand-in for the internet) through the bridge and NAT.
func TestOutbound(t *testing.T) {
	f := newFixture(t)
	ns, addr := internet(t)
	srv := serve(t, ns, addr.String()+":0")
	n := f.setup(f.manager(nil))
	if !n.Addr.IsValid() || !DefaultSubnet.Contains(n.Addr) || n.Gateway != DefaultSubnet.Addr().Next() {
		t.Errorf("job address %s, gateway %s: want both in %s", n.Addr, n.Gateway, DefaultSubnet)
	}
	if !connect(t, f.job(n), srv) {
		t.Errorf("a job on the bridge could not reach %s in the test's internet namespace", srv)
	}
}

// TestHostUnreachable: a server the test binds on the host at 0.0.0.0 is
// not reachable from a job, neither through the bridge's gateway address
// nor through any of the host's own addresses. Positive controls: the host
// itself reaches the server at each of them, and the same job reaches the
// internet stand-in with the same probe.
func TestHostUnreachable(t *testing.T) {
	f := newFixture(t)
	ns, addr := internet(t)
	out := serve(t, ns, addr.String()+":0")
	srv := serve(t, "", "0.0.0.0:0")
	n := f.setup(f.manager(nil))
	c := f.job(n)
	if !connect(t, c, out) {
		t.Fatal("positive control: the job could not reach the internet stand-in")
	}
	targets := []netip.Addr{n.Gateway}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		if ip = ip.Unmap(); !ip.IsLoopback() && !slices.Contains(targets, ip) {
			targets = append(targets, ip)
		}
	}
	for _, ip := range targets {
		to := netip.AddrPortFrom(ip, srv.Port())
		if !hostConnect(t, to) {
			t.Errorf("positive control: the host itself cannot reach its server at %s", to)
			continue
		}
		if connect(t, c, to) {
			t.Errorf("a job reached the host's server at %s", to)
		}
	}
}

// TestIsolation: two concurrent jobs cannot reach each other; a job
// reaches its own address (positive control).
func TestIsolation(t *testing.T) {
	f := newFixture(t)
	m := f.manager(nil)
	a, b := f.setup(m), f.setup(m)
	ca, cb := f.job(a), f.job(b)
	srv := serve(t, a.Path, "0.0.0.0:0")
	own := netip.AddrPortFrom(a.Addr, srv.Port())
	if !connect(t, ca, own) {
		t.Fatalf("positive control: job a cannot reach its own server at %s", own)
	}
	if connect(t, cb, own) {
		t.Errorf("job b reached job a's server at %s", own)
	}
}

// TestDeny: a range on the deny-list is dropped for the job, by a rule
// the kernel reports back; without the deny the same server is reachable.
func TestDeny(t *testing.T) {
	f := newFixture(t)
	ns, addr := internet(t)
	srv := serve(t, ns, addr.String()+":0")
	denied := netip.PrefixFrom(addr, 30).Masked()

	open := f.setup(f.manager(nil))
	if !connect(t, f.job(open), srv) {
		t.Fatalf("positive control: %s unreachable without a deny-list", srv)
	}
	n := f.setup(f.manager([]netip.Prefix{denied, netip.MustParsePrefix("169.254.169.254/32")}))
	got, err := f.manager(nil).JobRules(n.Comment)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !slices.Contains(got, denied) || !slices.Contains(got, netip.MustParsePrefix("169.254.169.254/32")) {
		t.Errorf("deny rules of the job: %v, want %s and 169.254.169.254/32", got, denied)
	}
	if other, _ := f.manager(nil).JobRules(open.Comment); len(other) != 0 {
		t.Errorf("the job without a deny-list has deny rules %v", other)
	}
	if connect(t, f.job(n), srv) {
		t.Errorf("a job reached %s, which its deny-list holds", srv)
	}
}

// TestDefaultDeny: a manager without a configured deny-list denies the
// cloud metadata address.
func TestDefaultDeny(t *testing.T) {
	f := newFixture(t)
	m, err := New(Options{StateDir: f.dir})
	if err != nil {
		t.Fatal(err)
	}
	n := f.setup(m)
	got, err := m.JobRules(n.Comment)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, netip.MustParsePrefix("169.254.169.254/32")) {
		t.Errorf("default deny rules %v lack 169.254.169.254/32", got)
	}
}

// TestTeardown: after Teardown nothing of the job is left: no veth (the
// kernel removes it with the namespace, soon after), no rule, no lease, no
// namespace (the fixture's leak check covers links, addresses, namespaces
// and rules).
func TestTeardown(t *testing.T) {
	f := newFixture(t)
	m := f.manager([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")})
	n, err := m.Setup(t.Context(), "teardown")
	if err != nil {
		t.Fatal(err)
	}
	veth := vethName(m.tag, "teardown")
	if _, err := netlink.LinkByName(veth); err != nil {
		t.Fatalf("veth %s after Setup: %v", veth, err)
	}
	if err := n.Teardown(); err != nil {
		t.Fatal(err)
	}
	if err := n.Teardown(); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
	if !waitNoLink(veth) {
		t.Errorf("veth %s left after Teardown", veth)
	}
	ls, err := readLeases(m.leaseFile())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ls.find("teardown"); ok {
		t.Error("lease left after Teardown")
	}
	if _, err := os.Stat(filepath.Join(f.dir, "network", "teardown")); err == nil {
		t.Error("job directory left after Teardown")
	}
}

// TestCleanupAfterCrash: a process killed with a job's network up leaves
// its veth, rules, lease and namespace; Cleanup removes them, and only
// once the process is dead.
func TestCleanupAfterCrash(t *testing.T) {
	f := newFixture(t)
	m := f.manager(nil)
	cmd := startHelper(t, f.dir)
	veth := vethName(m.tag, "crashed")
	if err := m.Cleanup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(veth); err != nil {
		t.Fatalf("Cleanup removed a live process's veth %s: %v", veth, err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	ls, _ := readLeases(m.leaseFile())
	if _, ok := ls.find("crashed"); !ok {
		t.Fatal("the killed process left no lease: nothing to clean up, the test proves nothing")
	}
	if rules, _ := m.JobRules(RuleComment(m.tag, "crashed")); len(rules) == 0 {
		t.Fatal("the killed process left no rules: the test proves nothing")
	}
	if err := m.Cleanup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(veth); err == nil {
		t.Errorf("veth %s left after Cleanup", veth)
	}
	ls, _ = readLeases(m.leaseFile())
	if _, ok := ls.find("crashed"); ok {
		t.Error("lease left after Cleanup")
	}
}

// TestCleanupOtherStateDir: a dead job's lease, veth and rules are reaped
// by a manager of another state dir (they are host-wide), but its
// namespace is left to its own state dir's Cleanup.
func TestCleanupOtherStateDir(t *testing.T) {
	f := newFixture(t)
	other := filepath.Join(t.TempDir(), "other")
	if err := os.MkdirAll(filepath.Join(other, "network"), 0o700); err != nil {
		t.Fatal(err)
	}
	snap := leakcheck.Take(t, filepath.Join(other, "network"))
	cmd := startHelper(t, other)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if err := f.manager(nil).Cleanup(t.Context()); err != nil {
		t.Fatal(err)
	}
	tag := owner.Tag(filepath.Join(other, "network"))
	if _, err := netlink.LinkByName(vethName(tag, "crashed")); err == nil {
		t.Error("the dead job's veth is left")
	}
	if rules, _ := f.manager(nil).JobRules(RuleComment(tag, "crashed")); len(rules) != 0 {
		t.Errorf("the dead job's rules are left: %v", rules)
	}
	om, err := New(Options{StateDir: other, Log: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := om.Cleanup(t.Context()); err != nil {
		t.Fatal(err)
	}
	snap.Check(t)
}

func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "resolv.conf")
	os.WriteFile(p, []byte("# comment\nnameserver 127.0.0.53\nnameserver 10.1.2.3\nnameserver ::1\nnameserver 2001:db8::1\nsearch example.com\noptions edns0\n"), 0o644)
	got, err := resolvConf(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := "nameserver 10.1.2.3\nsearch example.com\noptions edns0\n"; got != want {
		t.Errorf("resolv.conf %q, want %q", got, want)
	}
}

func TestLeases(t *testing.T) {
	subnet := netip.MustParsePrefix("10.9.0.0/29")
	gw := subnet.Addr().Next()
	ls := leases{}
	var got []string
	for range 5 {
		a, err := ls.allocate(subnet, gw, lease{ID: "x"})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a.String())
	}
	if want := "10.9.0.2 10.9.0.3 10.9.0.4 10.9.0.5 10.9.0.6"; strings.Join(got, " ") != want {
		t.Errorf("allocated %v, want %s", got, want)
	}
	if _, err := ls.allocate(subnet, gw, lease{ID: "y"}); err == nil || !strings.Contains(err.Error(), "no free address in 10.9.0.0/29") {
		t.Errorf("full subnet: %v", err)
	}
	delete(ls, netip.MustParseAddr("10.9.0.3"))
	if a, _ := ls.allocate(subnet, gw, lease{ID: "z"}); a.String() != "10.9.0.3" {
		t.Errorf("reused %s, want 10.9.0.3", a)
	}
}

// TestSubnetOverlap: a subnet that overlaps a route of the host is
// refused, naming the route; a subnet that overlaps nothing works
// (positive control). Both on a bridge, lease dir and table of the test's
// own, so the shared ones are not touched.
func TestSubnetOverlap(t *testing.T) {
	f := newFixture(t)
	_, addr := internet(t)
	opts := f.privateHost()
	bridge := opts.Bridge
	opts.Subnet = netip.PrefixFrom(addr, 24)
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.closeAtEnd(m)
	_, err = m.Setup(t.Context(), "overlap")
	want := fmt.Sprintf("overlaps the host's route to %s", netip.PrefixFrom(addr, 30).Masked())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Setup on an overlapping subnet: %v, want an error containing %q", err, want)
	}
	if _, err := netlink.LinkByName(bridge); err == nil {
		t.Errorf("bridge %s made for a refused subnet", bridge)
	}
	a4 := addr.As4()
	opts.Subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, a4[2], 0}), 24)
	if m, err = New(opts); err != nil {
		t.Fatal(err)
	}
	f.closeAtEnd(m)
	n := f.setup(m)
	if _, err := netlink.LinkByName(bridge); err != nil {
		t.Errorf("bridge %s after Setup: %v", bridge, err)
	}
	if !opts.Subnet.Contains(n.Addr) {
		t.Errorf("address %s outside %s", n.Addr, opts.Subnet)
	}
}

// TestDNS: the job's resolv.conf lists the host's resolvers but loopback
// ones, which the job cannot reach.
func TestDNS(t *testing.T) {
	f := newFixture(t)
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(conf, []byte("nameserver 127.0.0.53\nnameserver 198.18.0.53\nsearch example.test\n"), 0o644)
	m, err := New(Options{StateDir: f.dir, ResolvConf: conf, Deny: []netip.Prefix{}})
	if err != nil {
		t.Fatal(err)
	}
	c := f.job(f.setup(m))
	var out bytes.Buffer
	exit, err := c.Exec(t.Context(), sandbox.Process{Args: []string{"/bin/cat", "/etc/resolv.conf"}, Stdout: &out})
	if err != nil || !exit.Success() {
		t.Fatalf("cat: %v %v", exit, err)
	}
	if want := "nameserver 198.18.0.53\nsearch example.test\n"; out.String() != want {
		t.Errorf("job's resolv.conf %q, want %q", out.String(), want)
	}
}

// TestHostKeptUntilClose: the bridge and the table outlive a job's
// teardown while the Manager lives, and go with Close once no lease is
// left; Close keeps them while another Manager's job holds a lease, and
// that Manager's Close removes them. A Manager that made nothing changes
// nothing on Close.
func TestHostKeptUntilClose(t *testing.T) {
	f := newFixture(t)
	o := f.privateHost()
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(o.Dir); err == nil {
		t.Errorf("Close of an unused Manager made %s", o.Dir)
	}
	n, err := m.Setup(t.Context(), "kept")
	if err != nil {
		t.Fatal(err)
	}
	if !hasLink(o.Bridge) || !hasTable(t, m.table) {
		t.Fatal("positive control: no bridge or table after Setup")
	}
	if err := n.Teardown(); err != nil {
		t.Fatal(err)
	}
	if !hasLink(o.Bridge) {
		t.Errorf("bridge %s removed by a teardown while its Manager lives", o.Bridge)
	}
	if !hasTable(t, m.table) {
		t.Errorf("table %s removed by a teardown while its Manager lives", m.table)
	}

	// Another Manager (another process, as far as the lease file knows)
	// has a job: Close must leave the host side to it.
	o2 := o
	o2.StateDir = filepath.Join(t.TempDir(), "other")
	m2, err := New(o2)
	if err != nil {
		t.Fatal(err)
	}
	n2, err := m2.Setup(t.Context(), "other")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if !hasLink(o.Bridge) || !hasTable(t, m.table) {
		t.Fatalf("Close removed the bridge or the table under another Manager's live job")
	}
	if err := n2.Teardown(); err != nil {
		t.Fatal(err)
	}
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	if hasLink(o.Bridge) {
		t.Errorf("bridge %s left after the last Close", o.Bridge)
	}
	if hasTable(t, m.table) {
		t.Errorf("table %s left after the last Close", m.table)
	}
}

// TestAddressReuse: a job torn down releases its address at once, while
// the kernel may still be removing its veth pair; the next job gets the
// same address and reaches the internet stand-in through the kept bridge,
// as the first did (which is the positive control).
func TestAddressReuse(t *testing.T) {
	f := newFixture(t)
	ns, addr := internet(t)
	srv := serve(t, ns, addr.String()+":0")
	o := f.privateHost()
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	f.closeAtEnd(m)
	var prev netip.Addr
	for i := range 3 {
		n, err := m.Setup(t.Context(), fmt.Sprintf("reuse%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if prev.IsValid() && n.Addr != prev {
			t.Errorf("job %d got %s, want the address just released, %s", i, n.Addr, prev)
		}
		prev = n.Addr
		c := f.job(n)
		if !connect(t, c, srv) {
			t.Errorf("job %d on %s could not reach %s", i, n.Addr, srv)
		}
		if err := c.Destroy(); err != nil {
			t.Fatal(err)
		}
		if err := n.Teardown(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCleanupRemovesHost: a process killed with a job up leaves its lease,
// veth, rules, bridge and table; Cleanup leaves them all while the
// process lives (positive control), and removes them all, the bridge and
// the table included, once it is dead and no other lease is left.
func TestCleanupRemovesHost(t *testing.T) {
	f := newFixture(t)
	o := f.privateHost()
	o.Deny = nil // DefaultDeny, as the helper has: rules to leave behind
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	cmd := startHelper(t, f.dir, fmt.Sprintf("%s=%s %s %s", helperHostEnv, o.Bridge, o.Dir, o.Subnet))
	veth := vethName(m.tag, "crashed")
	if err := m.Cleanup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !hasLink(veth) || !hasLink(o.Bridge) || !hasTable(t, m.table) {
		t.Fatal("Cleanup removed a live process's veth, bridge or table")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if rules, _ := m.JobRules(RuleComment(m.tag, "crashed")); len(rules) == 0 {
		t.Fatal("the killed process left no rules: the test proves nothing")
	}
	if err := m.Cleanup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !waitNoLink(veth) {
		t.Errorf("veth %s left after Cleanup", veth)
	}
	ls, _ := readLeases(m.leaseFile())
	if len(ls) != 0 {
		t.Errorf("leases left after Cleanup: %v", ls)
	}
	if hasLink(o.Bridge) {
		t.Errorf("bridge %s left after Cleanup", o.Bridge)
	}
	if hasTable(t, m.table) {
		t.Errorf("table %s left after Cleanup", m.table)
	}
}

// TestThreadGoesHome: the thread that makes a namespace, and the one that
// runs a function in it, go back to the host's namespace afterwards
// rather than end: Go parks the main thread for good instead of ending
// it, and parked in a job's namespace it would keep the namespace and the
// job's veth pair alive after teardown.
func TestThreadGoesHome(t *testing.T) {
	testenv.RequireRoot(t)
	home, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ns")
	if err := makeNetNS(path); err != nil {
		t.Fatal(err)
	}
	defer removeNetNS(path)
	var tid int
	var inside string
	if err := inNetNS(path, func() error {
		tid = unix.Gettid()
		inside, err = os.Readlink(fmt.Sprintf("/proc/self/task/%d/ns/net", tid))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside == home {
		t.Fatalf("positive control: f ran in the host's namespace %s", home)
	}
	got, err := os.Readlink(fmt.Sprintf("/proc/self/task/%d/ns/net", tid))
	if err != nil || got != home {
		t.Errorf("thread %d after inNetNS: %q, %v; want it alive in the host's namespace %s", tid, got, err, home)
	}
}

// TestSameIDAfterTeardown: a job of the same id set up while the torn-down
// one's veth pair still lingers (here the test holds its namespace open, as
// a slow kernel clean-up would) gets its network: Setup deletes the
// lingering link. The positive control is that it does linger.
func TestSameIDAfterTeardown(t *testing.T) {
	f := newFixture(t)
	m := f.manager(nil)
	n, err := m.Setup(t.Context(), "again")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.GetFromPath(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	err = n.Teardown()
	veth := vethName(m.tag, "again")
	lingered := hasLink(veth)
	if err != nil || !lingered {
		ns.Close()
		t.Fatalf("positive control: Teardown %v; veth %s lingering while its namespace is open: %v", err, veth, lingered)
	}
	n2, err := m.Setup(t.Context(), "again")
	ns.Close()
	if err != nil {
		t.Fatalf("Setup of a torn-down job's id while its veth lingers: %v", err)
	}
	if err := n2.Teardown(); err != nil {
		t.Fatal(err)
	}
}

// TestHostKeptForLiveManager: with no lease left, another process's
// Cleanup (a jobrun starting) leaves the bridge and the table to a live
// Manager that made them, which would otherwise make them again for its
// next job; once that Manager is closed they go.
func TestHostKeptForLiveManager(t *testing.T) {
	f := newFixture(t)
	o := f.privateHost()
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	n, err := m.Setup(t.Context(), "idle")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Teardown(); err != nil {
		t.Fatal(err)
	}
	o2 := o
	o2.StateDir = filepath.Join(t.TempDir(), "starting")
	starting, err := New(o2)
	if err != nil {
		t.Fatal(err)
	}
	if err := starting.Cleanup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !hasLink(o.Bridge) || !hasTable(t, m.table) {
		t.Fatal("another Manager's Cleanup removed the bridge or the table of a live Manager")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if hasLink(o.Bridge) || hasTable(t, m.table) {
		t.Error("bridge or table left after the only Manager using them closed")
	}
}
