package network

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/testenv"
)

// Tests send traffic only to loopback, to the host's own addresses (which
// must refuse it), and to addresses inside network namespaces they make
// themselves, numbered from 198.18.0.0/15 (RFC 2544's benchmarking range,
// never routed on the internet).

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		helper()
		return
	}
	if p := os.Getenv(probeEnv); p != "" {
		os.Exit(probe(p))
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "network-test-launcher")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := testenv.InstallHelpers(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// fixture is one test's state dir, with a network manager, a sandbox
// runtime and a busybox root filesystem.
type fixture struct {
	t     *testing.T
	dir   string
	rt    *sandbox.Runtime
	root  string
	count int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	testenv.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "state")
	run, err := sandbox.RunDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Taken before sandbox.New: its run dir goes with Close.
	runSnap := leakcheck.Take(t, run)
	t.Cleanup(func() { runSnap.Check(t) })
	rt, err := sandbox.New(dir, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	// Its starter is there before the snapshot below.
	if err := rt.Ready(); err != nil {
		rt.Close()
		t.Fatal(err)
	}
	// The state dir's layout is made before the snapshot: what the jobs
	// leave there is the point.
	if err := os.MkdirAll(filepath.Join(dir, "network"), 0o700); err != nil {
		t.Fatal(err)
	}
	snap := leakcheck.Take(t, filepath.Join(dir, "network"))
	t.Cleanup(func() { snap.Check(t) })
	t.Cleanup(func() { rt.Close() })
	return &fixture{t: t, dir: dir, rt: rt, root: busybox(t)}
}

func (f *fixture) manager(deny []netip.Prefix) *Manager {
	f.t.Helper()
	if deny == nil {
		deny = []netip.Prefix{}
	}
	m, err := New(Options{StateDir: f.dir, Deny: deny, Log: hclog.NewNullLogger()})
	if err != nil {
		f.t.Fatal(err)
	}
	f.closeAtEnd(m)
	return m
}

// closeAtEnd closes m when the test ends, after the networks set up
// later are torn down.
func (f *fixture) closeAtEnd(m *Manager) {
	f.t.Cleanup(func() {
		if err := m.Close(); err != nil {
			f.t.Error(err)
		}
	})
}

// privateHost returns options for a bridge, lease dir, table and subnet
// of the test's own (198.19.X.0/24, which no internet stand-in uses), so
// that what the test sees of them is its own doing.
func (f *fixture) privateHost() Options {
	f.t.Helper()
	bridge := fmt.Sprintf("jrt%x", rand.Uint32())
	o := Options{StateDir: f.dir, Dir: filepath.Join(f.t.TempDir(), "leases"), Bridge: bridge, Deny: []netip.Prefix{},
		Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(rand.IntN(250) + 1), 0}), 24), Log: hclog.NewNullLogger()}
	f.t.Cleanup(func() {
		// Runs after the test's Managers are closed (it is registered
		// before any of them): the last Close must have removed both.
		if hasLink(bridge) {
			f.t.Errorf("leak: bridge %s left after the test's Managers closed", bridge)
			delBridge(bridge)
		}
		if hasTable(f.t, tableFor(bridge)) {
			f.t.Errorf("leak: table inet %s left after the test's Managers closed", tableFor(bridge))
			deleteTable(tableFor(bridge))
		}
	})
	return o
}

// setup makes a network and tears it down when the test ends.
func (f *fixture) setup(m *Manager) *Net {
	f.t.Helper()
	f.count++
	n, err := m.Setup(context.Background(), fmt.Sprintf("job%d-%x", f.count, rand.Uint32()))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		if err := n.Teardown(); err != nil {
			f.t.Error(err)
		}
	})
	return n
}

// job starts a container in n's namespace (host networking if n is nil).
func (f *fixture) job(n *Net) *sandbox.Container {
	f.t.Helper()
	f.count++
	s := sandbox.Spec{ID: fmt.Sprintf("c%d-%x", f.count, rand.Uint32()), Rootfs: f.root}
	if n != nil {
		s.NetNS, s.ResolvConf = n.Path, n.ResolvConf
	} else {
		s.Network = "host"
	}
	c, err := f.rt.Start(context.Background(), s)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		if err := c.Destroy(); err != nil {
			f.t.Error(err)
		}
	})
	return c
}

// connect runs busybox nc in c against addr and reports whether it read
// the test server's greeting.
func connect(t *testing.T, c *sandbox.Container, addr netip.AddrPort) bool {
	t.Helper()
	var out bytes.Buffer
	exit, err := c.Exec(context.Background(), sandbox.Process{
		Args:   []string{"/bin/sh", "-c", fmt.Sprintf("nc -w 2 %s %d </dev/null", addr.Addr(), addr.Port())},
		Stdout: &out, Stderr: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	ok := exit.Success() && strings.Contains(out.String(), greeting)
	t.Logf("nc %s from %s: %s, %q", addr, c.ID(), exit, out.String())
	return ok
}

const greeting = "hello from the test server"

// serve listens on addr (port 0: any) in the namespace at nsPath (the
// host's if empty), greets every connection, and returns the address.
func serve(t *testing.T, nsPath string, addr string) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	listen := func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}
	var err error
	if nsPath == "" {
		err = listen()
	} else {
		err = inNetNS(nsPath, listen)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, greeting)
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// internet makes a network namespace standing in for the internet: a veth
// pair from the host to it, 198.18.N.1/30 on the host and 198.18.N.2/30
// inside. It returns the namespace's path and its address.
func internet(t *testing.T) (string, netip.Addr) {
	t.Helper()
	n := rand.IntN(250) + 1
	hostAddr := netip.MustParsePrefix(fmt.Sprintf("198.18.%d.1/30", n))
	inAddr := netip.MustParsePrefix(fmt.Sprintf("198.18.%d.2/30", n))
	path := filepath.Join(t.TempDir(), "internet")
	if err := makeNetNS(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := removeNetNS(path); err != nil {
			t.Error(err)
		}
	})
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	name := fmt.Sprintf("jrtin%x", rand.Uint32())
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "eth0", PeerNamespace: netlink.NsFd(ns)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := delLink(name); err != nil {
			t.Error(err)
		}
	})
	hl, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(hl, &netlink.Addr{IPNet: ipNet(hostAddr)}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(hl); err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(inAddr)}); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		t.Fatal(err)
	}
	return path, inAddr.Addr()
}

// busybox builds a root filesystem of busybox-static and its applets.
func busybox(t *testing.T) string {
	t.Helper()
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		t.Skip("needs /bin/busybox (Debian package busybox-static): `make test` installs it")
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range strings.Fields(string(out)) {
		if name != "busybox" {
			if err := os.Symlink("busybox", filepath.Join(root, "bin", name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// helperEnv makes the test binary a process that sets up a job's network
// in the state dir it names, prints "ready ADDR" and waits to be killed.
// helperHostEnv, if set, is "BRIDGE DIR SUBNET" for a private host side;
// helperNetNSEnv, if set, the namespace to set the network up in
// (SetupIn); helperAllowEnv, if set, an ADDR:PORT to allow.
const (
	helperEnv      = "JOBRUN_NETWORK_TEST_HELPER"
	helperHostEnv  = "JOBRUN_NETWORK_TEST_HELPER_HOST"
	helperNetNSEnv = "JOBRUN_NETWORK_TEST_HELPER_NETNS"
	helperAllowEnv = "JOBRUN_NETWORK_TEST_HELPER_ALLOW"
)

func helper() {
	o := Options{StateDir: os.Getenv(helperEnv), Log: hclog.NewNullLogger()}
	if a := os.Getenv(helperAllowEnv); a != "" {
		o.Allow = []netip.AddrPort{netip.MustParseAddrPort(a)}
	}
	if h := strings.Fields(os.Getenv(helperHostEnv)); len(h) == 3 {
		o.Bridge, o.Dir, o.Subnet = h[0], h[1], netip.MustParsePrefix(h[2])
	}
	m, err := New(o)
	if err == nil {
		var n *Net
		if ns := os.Getenv(helperNetNSEnv); ns != "" {
			n, err = m.SetupIn(context.Background(), "crashed", ns)
		} else {
			n, err = m.Setup(context.Background(), "crashed")
		}
		if err == nil {
			fmt.Printf("ready %s\n", n.Addr)
			select {}
		}
	}
	fmt.Fprintln(os.Stderr, "helper:", err)
	os.Exit(1)
}

// startHelper runs the helper on dir and returns once its network is up.
func startHelper(t *testing.T, dir string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+dir), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper: %q, %v", line, err)
	}
	return cmd
}

// waitNoLink waits a few seconds for the link name to be gone (the kernel
// destroys a job's veth pair with its namespace, in the background), and
// reports whether it went.
func waitNoLink(name string) bool {
	for deadline := time.Now().Add(testenv.Scale(5 * time.Second)); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := netlink.LinkByName(name); err != nil {
			return true
		}
	}
	return false
}

// hasTable reports whether the nftables table inet name exists.
func hasTable(t *testing.T, name string) bool {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListTableOfFamily(name, nftables.TableFamilyINet)
	return err == nil
}

// hasLink reports whether a link called name exists.
func hasLink(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// hostConnect dials addr from the host itself and reports whether it read
// the greeting.
func hostConnect(t *testing.T, addr netip.AddrPort) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp4", addr.String(), testenv.Scale(2*time.Second))
	if err != nil {
		t.Logf("host dial %s: %v", addr, err)
		return false
	}
	defer c.Close()
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.Contains(line, greeting)
}
