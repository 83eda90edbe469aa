package network

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/internal/nldump"
)

// checkGivenNetNS refuses a namespace SetupIn was given unless it is a
// network namespace, not the one this process (the host) is in, and
// unused: no link but loopback is up or has an address. (A new namespace
// may hold links already, down and without addresses: the fallback
// devices, such as tunl0 or sit0, that tunnel modules loaded on the host
// add to every namespace.) Anything else is a caller's mistake that would
// otherwise put a job's address, routes and sysctls where they do not
// belong.
func checkGivenNetNS(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("network namespace %q: want an absolute path", path)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer unix.Close(fd)
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil || typ != unix.CLONE_NEWNET {
		return fmt.Errorf("%s is not a network namespace (an nsfs bind mount of one)", path)
	}
	var ns, home unix.Stat_t
	if err := unix.Fstat(fd, &ns); err != nil {
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	// Threads of this process are in the host's namespace unless they
	// are locked in another (onThreadIn), so /proc/self is the host's.
	if err := unix.Stat("/proc/self/ns/net", &home); err != nil {
		return fmt.Errorf("this process's network namespace: %w", err)
	}
	if ns.Dev == home.Dev && ns.Ino == home.Ino {
		return fmt.Errorf("network namespace %s is the host's own: want a new, empty one", path)
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(fd))
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer h.Close()
	links, err := nldump.Retry(h.LinkList)
	if err != nil {
		return fmt.Errorf("links in %s: %w", path, err)
	}
	for _, l := range links {
		a := l.Attrs()
		if a.Name == "lo" {
			continue
		}
		if a.Flags&net.FlagUp != 0 {
			return fmt.Errorf("network namespace %s is in use: its link %s is up", path, a.Name)
		}
		addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return fmt.Errorf("addresses in %s: %w", path, err)
		}
		if len(addrs) > 0 {
			return fmt.Errorf("network namespace %s is in use: its link %s has the address %s", path, a.Name, addrs[0].IPNet)
		}
	}
	return nil
}

// setSysctls sets, inside the job's namespace at path, what Docker sets
// in a container's: unprivileged processes may bind ports below 1024
// (net.ipv4.ip_unprivileged_port_start=0) and open ICMP echo sockets,
// so ping works without CAP_NET_RAW (net.ipv4.ping_group_range="0
// 2147483647"). /proc/sys/net shows the namespace of the thread that
// opens it, so the files are written from a thread in the namespace; the
// host's values are never touched. The group range is written from the
// host's user namespace, so it counts host group ids, and covers every
// range a job's user namespace maps onto (Docker writes it from inside
// the container, and so cannot set it in a user namespace at all); read
// from inside a job's user namespace it shows as the overflow group
// ("65534 65534"), which changes nothing to who may ping.
func setSysctls(path string) error {
	sysctls := []struct{ name, value string }{
		{"net/ipv4/ip_unprivileged_port_start", "0"},
		{"net/ipv4/ping_group_range", "0 2147483647"},
	}
	return inNetNS(path, func() error {
		for _, s := range sysctls {
			// The file is opened on this locked thread, so in the
			// namespace.
			if err := os.WriteFile("/proc/sys/"+s.name, []byte(s.value+"\n"), 0o644); err != nil {
				return fmt.Errorf("sysctl %s in %s: %w", s.name, path, err)
			}
		}
		return nil
	})
}
