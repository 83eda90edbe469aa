package leakcheck

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/internal/nldump"
	"github.com/jobrun/jobrun/internal/owner"
)

// Network resources are host-wide, so they are scoped by the owner.Tag of
// the state dir, which jobrun writes into each per-job resource:
//
//   - links whose interface alias starts with "jobrun TAG " (the host end
//     of a job's veth pair), and the addresses on them;
//   - network namespaces: nsfs mounts of them under the state dir, and the
//     addresses inside them (other namespaces' nsfs mounts, such as a
//     job's user namespace, are mounts like any other);
//   - nftables rules, in any table, whose comment starts with "jobrun TAG ".
//
// Shared resources (the bridge, the base rules of the jobrun table) carry
// no tag: other tests' jobs come and go on them.
type netState struct {
	links, addrs, netns, rules map[string]int
}

func readNet(stateDir string, nsfs []string) (netState, error) {
	prefix := "jobrun " + owner.Tag(stateDir) + " "
	st := netState{links: map[string]int{}, addrs: map[string]int{}, netns: map[string]int{}, rules: map[string]int{}}
	if os.Geteuid() != 0 {
		// Only root makes links and rules, and only root may list
		// nftables rules: a test without root has none to leak.
		return st, nil
	}
	links, err := nldump.Retry(netlink.LinkList)
	if err != nil {
		return st, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		a := l.Attrs()
		if !strings.HasPrefix(a.Alias, prefix) {
			continue
		}
		st.links[fmt.Sprintf("%s (%s, %q)", a.Name, l.Type(), a.Alias)]++
		addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_V4) })
		if err != nil {
			continue // the link went away meanwhile
		}
		for _, ad := range addrs {
			st.addrs[fmt.Sprintf("%s on %s", ad.IPNet, a.Name)]++
		}
	}
	for _, p := range nsfs {
		if !isNetNS(p) {
			continue // a job's user namespace, say: a mount like any other
		}
		st.netns[p]++
		if err := nsAddrs(p, st.addrs); err != nil {
			st.addrs[fmt.Sprintf("unreadable netns %s: %v", p, err)]++
		}
	}
	if err := rules(prefix, st.rules); err != nil {
		return st, err
	}
	return st, nil
}

// isNetNS reports whether the nsfs file at path is a network namespace,
// or may be: one that cannot be asked is counted, and its addresses
// reported unreadable.
func isNetNS(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return true
	}
	defer unix.Close(fd)
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	return err != nil || typ == unix.CLONE_NEWNET
}

// nsAddrs adds the IPv4 addresses inside the namespace at path, but
// loopback's, to out.
func nsAddrs(path string, out map[string]int) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	links, err := nldump.Retry(h.LinkList)
	if err != nil {
		return err
	}
	for _, l := range links {
		addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_V4) })
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if !a.IP.IsLoopback() {
				out[fmt.Sprintf("%s on %s in netns %s", a.IPNet, l.Attrs().Name, path)]++
			}
		}
	}
	return nil
}

// rules adds every nftables rule whose comment starts with prefix to out.
func rules(prefix string, out map[string]int) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	chains, err := c.ListChains()
	if err != nil {
		return fmt.Errorf("nftables: list chains: %w", err)
	}
	for _, ch := range chains {
		rs, err := c.GetRules(ch.Table, ch)
		if err != nil {
			continue // removed meanwhile
		}
		for _, r := range rs {
			if s, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && strings.HasPrefix(s, prefix) {
				out[fmt.Sprintf("table %s chain %s: %q", ch.Table.Name, ch.Name, s)]++
			}
		}
	}
	return nil
}

// nsfsMounts lists the mount points of network namespaces (nsfs mounts)
// under the state dir.
func nsfsMounts(stateDir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		if point := unescape(fields[4]); fields[sep+1] == "nsfs" && under(point, stateDir) {
			out = append(out, point)
		}
	}
	return out, sc.Err()
}
