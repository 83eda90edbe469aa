package leakcheck

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/internal/owner"
	"github.com/jobrun/jobrun/internal/testenv"
)

// TestLink: a veth pair tagged with the state dir's owner tag, and an
// address on it, are leaks; the same link tagged for another state dir
// is not (positive control of the scoping).
func TestLink(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	s := Take(t, dir)
	addVeth(t, "jrleakB", "jobrun "+owner.Tag(t.TempDir())+" other")
	expectClean(t, s)
	l := addVeth(t, "jrleakA", "jobrun "+owner.Tag(dir)+" planted")
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: ipNet(t, "198.18.250.1/30")}); err != nil {
		t.Fatal(err)
	}
	expectLeak(t, s, "new link (1): jrleakA")
	expectLeak(t, s, "new address (1): 198.18.250.1/30 on jrleakA")
}

// TestNetNS: a network namespace bound under the state dir is a leak, and
// so is the address inside it.
func TestNetNS(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	s := Take(t, dir)
	path := filepath.Join(dir, "netns")
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		if err := unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "", unix.MS_BIND, ""); err != nil {
			errc <- err
			return
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.AddrAdd(lo, &netlink.Addr{IPNet: ipNet(t, "198.18.251.1/24")})
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(path, unix.MNT_DETACH) })
	expectLeak(t, s, "new netns (1): "+path)
	expectLeak(t, s, "new address (1): 198.18.251.1/24 on lo in netns "+path)
}

// TestRule: an nftables rule with the state dir's comment is a leak; one
// with another state dir's comment is not.
func TestRule(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	s := Take(t, dir)
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Name: "jobrun-leaktest", Family: nftables.TableFamilyINet})
	t.Cleanup(func() {
		c.DelTable(tbl)
		if err := c.Flush(); err != nil {
			t.Error(err)
		}
	})
	ch := c.AddChain(&nftables.Chain{Name: "x", Table: tbl})
	for _, comment := range []string{"jobrun " + owner.Tag(t.TempDir()) + " other", "jobrun " + owner.Tag(dir) + " planted"} {
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{&expr.Counter{}},
			UserData: userdata.AppendString(nil, userdata.TypeComment, comment)})
		if comment[len(comment)-5:] == "other" {
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			expectClean(t, s)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	expectLeak(t, s, `new nftables rule (1): table jobrun-leaktest chain x: "jobrun `+owner.Tag(dir)+` planted"`)
}

func addVeth(t *testing.T, name, alias string) netlink.Link {
	t.Helper()
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, Alias: alias}, PeerName: name + "p"}); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.LinkDel(l) })
	if err := netlink.LinkSetAlias(l, alias); err != nil {
		t.Fatal(err)
	}
	return l
}

func ipNet(t *testing.T, s string) *net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return n
}

// TestUserNS: a user namespace bound under the state dir (a job's, as the
// sandbox holds it) is a leak, named as the nsfs mount it is, not as a
// network namespace (whose addresses it would fail to read). Positive
// control: a network namespace bound beside it is named as one.
func TestUserNS(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	s := Take(t, dir)
	cmd := exec.Command("/bin/cat")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 300000, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 300000, Size: 65536}},
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { in.Close(); cmd.Wait() }()
	for _, ns := range []string{"user", "net"} {
		path := filepath.Join(dir, ns)
		if err := os.WriteFile(path, nil, 0o444); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(fmt.Sprintf("/proc/%d/ns/%s", cmd.Process.Pid, ns), path, "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(path, unix.MNT_DETACH) })
	}
	user := filepath.Join(dir, "user")
	expectLeak(t, s, "new mount (1): "+user+" (nsfs")
	expectLeak(t, s, "new netns (1): "+filepath.Join(dir, "net"))
	s.settle = 0
	r := &recorder{TB: t}
	s.Check(r)
	if msg := strings.Join(r.msgs, "\n"); strings.Contains(msg, "netns "+user) || strings.Contains(msg, "netns (1): "+user) {
		t.Errorf("the user namespace is reported as a network namespace:\n%s", msg)
	}
}
