package network

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/jobrun/jobrun/internal/testenv"
)

// hostAddr gives the host an address of the test's own, 203.0.113.N/32
// (TEST-NET-3, never routed; TEST-NET-1 may be a test host's LAN) on a
// veth pair of its own (the dummy module may be missing), removed when
// the test ends: a non-loopback address of
// the host that jobs route to, as an operator's registry would listen on.
func hostAddr(t *testing.T) netip.Addr {
	t.Helper()
	r := rand.Uint32()
	name := fmt.Sprintf("jrta%x", r)
	addr := netip.AddrFrom4([4]byte{203, 0, 113, byte(rand.IntN(100) + 1)})
	// The pair's other end is in a network namespace only this process
	// holds: if the test is killed before its Cleanup, the kernel deletes
	// that namespace with the process, its end with it, and so the pair.
	peerNS, err := processNetNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peerNS.Close() })
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: fmt.Sprintf("jrtb%x", r),
		PeerNamespace: netlink.NsFd(peerNS)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := delLink(name); err != nil {
			t.Error(err)
		}
	})
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(addr, 32))}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return addr
}

// processNetNS makes a network namespace held only by the returned handle
// (no mount, no process in it): it goes when the handle is closed or this
// process ends, however it ends.
func processNetNS() (netns.NsHandle, error) {
	type made struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan made, 1)
	go func() {
		// The thread makes the namespace and goes back to its own. It
		// stays locked if it cannot: Go then ends it with the goroutine
		// (wedges it, if it is the main thread) rather than run other
		// code in the new namespace.
		runtime.LockOSThread()
		home, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- made{err: err}
			return
		}
		defer home.Close()
		h, err := netns.New()
		if err != nil {
			ch <- made{err: err}
			return
		}
		if err := netns.Set(home); err != nil {
			h.Close()
			ch <- made{err: err}
			return
		}
		runtime.UnlockOSThread()
		ch <- made{h: h}
	}()
	m := <-ch
	if m.err != nil {
		return 0, fmt.Errorf("new network namespace: %w", m.err)
	}
	return m.h, nil
}

// primaryAddr returns the host's address on its default route (the
// source of its traffic to the outside), if it has one: other tests add
// and remove addresses of their own while this one runs.
func primaryAddr(t *testing.T) (netip.Addr, bool) {
	t.Helper()
	routes, err := netlink.RouteGet(net.IPv4(192, 0, 2, 1))
	if err != nil || len(routes) == 0 || routes[0].Src == nil {
		t.Logf("no default route's source address: %v", err)
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(routes[0].Src)
	return a.Unmap(), ok
}

// allowManager is f.manager with an allow-list.
func (f *fixture) allowManager(allow ...netip.AddrPort) *Manager {
	f.t.Helper()
	m, err := New(Options{StateDir: f.dir, Deny: []netip.Prefix{}, Allow: allow, Log: hclog.NewNullLogger()})
	if err != nil {
		f.t.Fatal(err)
	}
	f.closeAtEnd(m)
	return m
}

// TestAllowOpensOnlyThatPort: an allow entry lets a job on the bridge
// reach exactly that address:port of the host, by a rule the kernel
// reports back; the same address on another port, the bridge's gateway
// and the host's primary address stay refused, though the host itself
// reaches the server at each (the positive controls).
func TestAllowOpensOnlyThatPort(t *testing.T) {
	f := newFixture(t)
	addr := hostAddr(t)
	srv := serve(t, "", addr.String()+":0")
	any := serve(t, "", "0.0.0.0:0") // every address of the host, another port
	m := f.allowManager(srv)
	n := f.setup(m)
	if got, err := m.JobAllows(n.Comment); err != nil || !slices.Equal(got, []netip.AddrPort{srv}) {
		t.Errorf("the job's allow rules: %v, %v; want %s", got, err, srv)
	}
	c := f.job(n)
	if !connect(t, c, srv) {
		t.Fatalf("a job could not reach %s, which its allow-list holds", srv)
	}
	targets := []netip.Addr{addr, n.Gateway}
	if p, ok := primaryAddr(t); ok && !slices.Contains(targets, p) {
		targets = append(targets, p)
	}
	for _, ip := range targets {
		to := netip.AddrPortFrom(ip, any.Port())
		if !hostConnect(t, to) {
			t.Errorf("positive control: the host itself cannot reach its server at %s", to)
			continue
		}
		if connect(t, c, to) {
			t.Errorf("a job allowed %s reached the host's %s", srv, to)
		}
	}
}

// TestAllowOffByDefault: without an allow entry, a job cannot reach the
// host's address:port that another job's allow-list opens, even while
// that job runs (the rules are per job) and the job itself reaches it.
func TestAllowOffByDefault(t *testing.T) {
	f := newFixture(t)
	addr := hostAddr(t)
	srv := serve(t, "", addr.String()+":0")
	allowed := f.job(f.setup(f.allowManager(srv)))
	none := f.setup(f.manager(nil))
	if got, err := f.manager(nil).JobAllows(none.Comment); err != nil || len(got) != 0 {
		t.Errorf("a job without an allow-list has allow rules %v, %v", got, err)
	}
	c := f.job(none)
	if !connect(t, allowed, srv) {
		t.Fatalf("positive control: the allowed job could not reach %s", srv)
	}
	if connect(t, c, srv) {
		t.Errorf("a job without an allow-list reached the host's %s", srv)
	}
}

// TestAllowRefusesLoopbackAndSubnet: the Manager refuses an entry no job
// could use or that would open the host wider than one port.
func TestAllowRefusesLoopbackAndSubnet(t *testing.T) {
	dir := t.TempDir()
	for a, want := range map[string]string{
		"127.0.0.1:5000":   "a job cannot reach the host's loopback",
		"10.213.0.1:5000":  "inside the jobs' subnet 10.213.0.0/16",
		"10.213.9.9:5000":  "inside the jobs' subnet 10.213.0.0/16",
		"192.0.2.10:0":     "want a port from 1 to 65535",
		"[2001:db8::1]:80": "want an IPv4 address:port",
	} {
		_, err := New(Options{StateDir: dir, Allow: []netip.AddrPort{netip.MustParseAddrPort(a)}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New with allow %s: %v, want an error containing %q", a, err, want)
		}
	}
	if _, err := New(Options{StateDir: dir, Allow: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.10:5000")}}); err != nil {
		t.Errorf("positive control: allow 192.0.2.10:5000: %v", err)
	}
}

// TestAllowRulesGoWithCrashedJob: a process killed with a job's network up
// leaves its allow rule in the host's input chain (the control: it is
// there); Cleanup removes it with the job's other rules, which the
// fixture's leak check confirms.
func TestAllowRulesGoWithCrashedJob(t *testing.T) {
	f := newFixture(t)
	m := f.manager(nil)
	allowed := netip.MustParseAddrPort("203.0.113.200:5000")
	cmd := startHelper(t, f.dir, helperAllowEnv+"="+allowed.String())
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	comment := RuleComment(m.tag, "crashed")
	if got, err := m.JobAllows(comment); err != nil || !slices.Equal(got, []netip.AddrPort{allowed}) {
		t.Fatalf("the killed process's allow rules: %v, %v; want %s: the test proves nothing", got, err, allowed)
	}
	if err := m.Cleanup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, err := m.JobAllows(comment); err != nil || len(got) != 0 {
		t.Errorf("allow rules left after Cleanup: %v, %v", got, err)
	}
}

// TestAllowWarnsOfOtherMachines: an entry naming no address of the host
// opens nothing (the input chain sees only the host's own traffic), and
// the Manager says so; one naming the host's draws no warning.
func TestAllowWarnsOfOtherMachines(t *testing.T) {
	testenv.RequireRoot(t)
	own := netip.AddrPortFrom(hostAddr(t), 5000)
	other := netip.MustParseAddrPort("203.0.113.250:5000") // hostAddr takes .1 to .100
	var log bytes.Buffer
	if _, err := New(Options{StateDir: t.TempDir(), Allow: []netip.AddrPort{own, other},
		Log: hclog.New(&hclog.LoggerOptions{Output: &log})}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "names no address of this host") || !strings.Contains(log.String(), other.String()) {
		t.Errorf("no warning about %s, not the host's:\n%s", other, log.String())
	}
	if strings.Contains(log.String(), own.String()) {
		t.Errorf("a warning about %s, the host's own:\n%s", own, log.String())
	}
}
