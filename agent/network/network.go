// Package network gives jobs bridge networking: each job gets a network
// namespace of its own, joined to a jobrun bridge by a veth pair, with an
// address from a host-wide lease file, a default route through the bridge,
// outbound NAT, and the host's upstream DNS resolvers. nftables rules (in a
// table of jobrun's own, inet jobrun) stop traffic between jobs, from jobs
// to the host's own addresses (but for the allow-list's address:ports, off
// by default), and to a deny-list of destination ranges.
// Links and addresses are made with netlink, rules with nftables' netlink
// API; nothing shells out to ip or nft.
//
// A Manager (New) serves one state dir. Setup makes a job's network in a
// namespace of its own; SetupIn does the same in an empty namespace the
// caller made and keeps (one owned by the job's user namespace, so that
// the job's root may mount a sysfs of it). Net.Teardown removes exactly
// what Setup or SetupIn made, Close removes the host side (bridge and
// table) when no job holds a lease any more, and Cleanup removes what a
// killed process left behind: only jobs whose lock is free. Every job's
// namespace gets Docker's net.ipv4.ip_unprivileged_port_start=0 and
// ping_group_range (see setSysctls); the host's sysctls are not touched
// but for IP forwarding.
//
// Where things live:
//
//	STATE/network/ID/lock        held while the job's network lives
//	STATE/network/ID/netns       the job's namespace, bind-mounted (nsfs);
//	                             Setup's only (SetupIn's is the caller's)
//	Dir/lock, Dir/leases         host-wide: the addresses leased to jobs
//	Dir/users                    held shared by each live Manager that
//	                             has made a network (see Close)
//
// The bridge, its subnet and the firewall table are host-wide, shared by
// every jobrun process whatever its state dir, so the lease file and its
// lock are too (Dir, by default /run/jobrun/network, on tmpfs like the
// links and rules it describes, which a reboot also removes). The bridge
// and the table are made by the first job that needs them and kept while
// any Manager that made a network lives (making and removing them costs
// tens of milliseconds of the kernel's RCU grace periods, too much to pay
// per job); the last Close removes them once no lease is left, and Cleanup
// does after a crash, so an idle host carries nothing of jobrun's.
//
// Per-job resources carry the owner.Tag of STATE/network: the host end of
// the veth pair in its interface alias ("jobrun TAG ID") and every rule in
// its nft comment (RuleComment), which is how Cleanup and the leak checker
// tell one state dir's jobs from another's.
package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/internal/lockfile"
	"github.com/jobrun/jobrun/internal/nldump"
	"github.com/jobrun/jobrun/internal/owner"
)

// Defaults of Options.
const (
	DefaultDir    = "/run/jobrun/network"
	DefaultBridge = "jobrun0"
)

// DefaultSubnet is the jobs' subnet unless configured: a /16 from the
// private range that container engines leave alone (podman uses
// 10.88.0.0/16, Docker 172.17.0.0/16 and up).
var DefaultSubnet = netip.MustParsePrefix("10.213.0.0/16")

// DefaultDeny are the destination ranges jobs may not reach unless the
// agent's configuration says otherwise: cloud metadata services, which
// hand out the host's credentials.
var DefaultDeny = []netip.Prefix{
	netip.MustParsePrefix("169.254.169.254/32"), // AWS, GCP, Azure, OpenStack metadata
	netip.MustParsePrefix("169.254.170.2/32"),   // AWS ECS task metadata
	netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud metadata
}

// Options configure a Manager.
type Options struct {
	// StateDir is the agent's state dir; jobs' locks and namespaces go
	// under StateDir/network.
	StateDir string
	// Dir holds the host-wide lease file; DefaultDir if empty.
	Dir string
	// Bridge is the bridge's name; DefaultBridge if empty. Every process
	// using a bridge must use the same Dir and Subnet with it: the leases
	// in Dir are the bridge's addresses.
	Bridge string
	// Subnet is the jobs' IPv4 subnet; its first address is the bridge's
	// (the jobs' gateway). DefaultSubnet if not valid.
	Subnet netip.Prefix
	// Deny are destination ranges jobs may not reach. Nil means
	// DefaultDeny; an empty non-nil slice denies nothing.
	Deny []netip.Prefix
	// Allow are TCP address:ports of the host jobs may reach, one port
	// each (allow.go); none by default. Each must pass CheckAllow with
	// the subnet.
	Allow []netip.AddrPort
	// ResolvConf is the file the jobs' DNS resolvers come from;
	// /etc/resolv.conf if empty.
	ResolvConf string
	// Rootless makes jobs' networks without root (rootless.go): a
	// namespace per job connected by pasta, the deny-list enforced inside
	// it; no bridge, no host firewall, no leases.
	Rootless bool
	Log      hclog.Logger
}

// Manager makes and removes jobs' networks. It is safe for concurrent use.
type Manager struct {
	o     Options
	tag   string
	jobs  string // StateDir/network
	table string // the nftables table
	gw    netip.Addr
	mu    sync.Mutex
	// user is this Manager's shared lock on Dir/users, taken by its first
	// lease: while any live Manager holds one, the bridge and the table
	// stay (see removeHostIfIdle). Nil before: Close has nothing to do.
	user *lockfile.Lock
	// unlinking counts the veth pairs of SetupIn's jobs that Teardown
	// left being deleted; Close waits for them.
	unlinking sync.WaitGroup
}

// New returns a Manager for o. It changes nothing on the host until the
// first Setup.
func New(o Options) (*Manager, error) {
	if o.StateDir == "" {
		return nil, errors.New("network: no state dir")
	}
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	if o.Bridge == "" {
		o.Bridge = DefaultBridge
	}
	if len(o.Bridge) >= 16 {
		return nil, fmt.Errorf("network: bridge name %q is longer than 15 characters", o.Bridge)
	}
	if !o.Subnet.IsValid() {
		o.Subnet = DefaultSubnet
	}
	o.Subnet = o.Subnet.Masked()
	if !o.Subnet.Addr().Is4() || o.Subnet.Bits() > 28 {
		return nil, fmt.Errorf("network: subnet %s: want an IPv4 prefix of /28 or wider", o.Subnet)
	}
	if o.Deny == nil {
		o.Deny = DefaultDeny
	}
	for _, p := range o.Deny {
		if !p.Addr().Is4() {
			return nil, fmt.Errorf("network: deny %s: only IPv4 ranges (jobs have no IPv6 route)", p)
		}
	}
	for _, a := range o.Allow {
		if err := CheckAllow(a, o.Subnet); err != nil {
			return nil, fmt.Errorf("network: %w", err)
		}
	}
	if o.ResolvConf == "" {
		o.ResolvConf = "/etc/resolv.conf"
	}
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if own, err := hostAllows(o.Allow); err == nil && len(own) < len(o.Allow) {
		for _, a := range o.Allow {
			if !slices.Contains(own, a) {
				o.Log.Warn("allow entry names no address of this host: it opens nothing (traffic to other machines is the deny-list's)", "allow", a)
			}
		}
	}
	m := &Manager{o: o, jobs: filepath.Join(o.StateDir, "network"), gw: o.Subnet.Addr().Next(), table: tableFor(o.Bridge)}
	if err := os.MkdirAll(m.jobs, 0o700); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	// The tag names STATE/network, where the jobs' namespaces are: a
	// leak check of that directory covers their links and rules too.
	m.tag = owner.Tag(m.jobs)
	return m, nil
}

// Net is one job's network.
type Net struct {
	m    *Manager
	id   string
	lock *lockfile.Lock
	// given is whether the namespace is the caller's (SetupIn), which
	// Teardown leaves in place.
	given bool
	// Path is the job's network namespace, for sandbox.Spec.NetNS: the
	// one Setup made, or the one SetupIn was given.
	Path string
	// Addr is the job's address and Gateway the bridge's.
	Addr, Gateway netip.Addr
	// ResolvConf is the job's /etc/resolv.conf: the host's upstream
	// resolvers (loopback ones cannot be reached from the job).
	ResolvConf string
	// Comment marks the job's firewall rules (see RuleComment).
	Comment string
	// pasta carries a rootless job's traffic (rootless.go).
	pasta *pastaProc
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// Setup makes the network of the job id (a container instance name,
// unique on the host while it runs) in a network namespace of its own,
// owned by the host's user namespace. Teardown undoes it; on error nothing
// is left.
func (m *Manager) Setup(ctx context.Context, id string) (*Net, error) {
	if m.o.Rootless {
		if !idPattern.MatchString(id) {
			return nil, fmt.Errorf("network %q: want 1 to 63 letters, digits or \"-\"", id)
		}
		return m.setupRootless(ctx, id)
	}
	return m.setup(ctx, id, "")
}

// SetupIn makes the network of the job id, as Setup does, in the existing,
// empty network namespace at netns (an nsfs bind mount of the caller's,
// typically of a namespace owned by the job's user namespace, so that the
// job's root may mount a sysfs of it). Teardown removes everything but
// that namespace, which stays the caller's to remove, and so does Cleanup
// for a dead process's job. A path that is not an empty network namespace
// other than the host's is refused.
func (m *Manager) SetupIn(ctx context.Context, id, netns string) (*Net, error) {
	if netns == "" {
		return nil, fmt.Errorf("network %s: no network namespace given", id)
	}
	if m.o.Rootless {
		return nil, fmt.Errorf("network %s: without root, a job's network is made in a namespace of its own (Setup)", id)
	}
	return m.setup(ctx, id, netns)
}

// setup is Setup in a namespace of its own if given is "", SetupIn in the
// one at given otherwise.
func (m *Manager) setup(ctx context.Context, id, given string) (_ *Net, err error) {
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("network %q: want 1 to 63 letters, digits or \"-\"", id)
	}
	begin := time.Now()
	dir := filepath.Join(m.jobs, id)
	n := &Net{m: m, id: id, Path: filepath.Join(dir, "netns"), Gateway: m.gw, Comment: RuleComment(m.tag, id)}
	if given != "" {
		n.Path, n.given = given, true
		if err := checkGivenNetNS(given); err != nil {
			return nil, fmt.Errorf("network %s: %w", id, err)
		}
	}
	if err := m.claim(n); err != nil {
		return nil, err
	}
	defer n.undoIfFailed(&err)
	if n.Addr, err = m.lease(ctx, id, filepath.Join(dir, "lock")); err != nil {
		return nil, err
	}
	if !n.given {
		if err := makeNetNS(n.Path); err != nil {
			return nil, err
		}
	}
	if err := m.link(n); err != nil {
		return nil, err
	}
	if err := setSysctls(n.Path); err != nil {
		return nil, err
	}
	if err := addJobRules(m.table, m.o.Bridge, n.Comment, n.Addr, m.o.Deny, m.o.Allow); err != nil {
		return nil, err
	}
	m.o.Log.Debug("network ready", "id", id, "addr", n.Addr, "took", time.Since(begin))
	return n, nil
}

// claim starts n's setup, in either mode: it reads the job's resolv.conf
// and takes the job's lock (STATE/network/ID/lock), refusing an id in
// use. On error nothing is held. From then on the caller defers
// n.undoIfFailed.
func (m *Manager) claim(n *Net) (err error) {
	if n.ResolvConf, err = resolvConf(m.o.ResolvConf); err != nil {
		return fmt.Errorf("network %s: %w", n.id, err)
	}
	n.lock, err = lockfile.TryAcquire(filepath.Join(m.jobs, n.id, "lock"))
	if errors.Is(err, lockfile.ErrLocked) {
		return fmt.Errorf("network %s: in use: %w", n.id, err)
	} else if err != nil {
		return fmt.Errorf("network %s: %w", n.id, err)
	}
	return nil
}

// undoIfFailed, deferred after claim, tears down what a failed setup made
// of n (lock included) and names the job in *err; it does nothing if *err
// is nil.
func (n *Net) undoIfFailed(err *error) {
	if *err == nil {
		return
	}
	if terr := n.Teardown(); terr != nil {
		n.m.o.Log.Error("clean up after failed network setup", "id", n.id, "error", terr)
	}
	*err = fmt.Errorf("network %s: %w", n.id, *err)
}

// lease takes an address for id under the host-wide lock, and makes sure
// the bridge and the firewall table exist while it holds it.
func (m *Manager) lease(ctx context.Context, id, lockPath string) (netip.Addr, error) {
	ls, unlock, err := m.lockLeases(ctx)
	if err != nil {
		return netip.Addr{}, err
	}
	defer unlock()
	addr, err := ls.allocate(m.o.Subnet, m.gw, lease{ID: id, Owner: m.tag, Lock: lockPath})
	if err != nil {
		return netip.Addr{}, err
	}
	if err := ls.write(m.leaseFile()); err != nil {
		return netip.Addr{}, err
	}
	if err := m.holdHost(); err != nil {
		return addr, err
	}
	if err := m.ensureHost(); err != nil {
		return addr, err
	}
	return addr, nil
}

func (m *Manager) leaseFile() string { return filepath.Join(m.o.Dir, "leases") }

// usersFile is the lock every live Manager that uses the bridge and the
// table holds shared; removing them takes it exclusive.
func (m *Manager) usersFile() string { return filepath.Join(m.o.Dir, "users") }

// holdHost takes this Manager's shared lock on usersFile, once. The caller
// holds the host-wide lock, under which alone the lock is taken exclusive,
// so it is free of exclusive holders.
func (m *Manager) holdHost() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.user != nil {
		return nil
	}
	l, err := lockfile.TryAcquireShared(m.usersFile())
	if err != nil {
		return err
	}
	m.user = l
	return nil
}

// ensureHost makes the bridge, the table, and turns IP forwarding on, if
// they are not there yet.
func (m *Manager) ensureHost() error {
	if err := ipForward(m.o.Log); err != nil {
		return err
	}
	if err := ensureBridge(m.o.Bridge, netip.PrefixFrom(m.gw, m.o.Subnet.Bits())); err != nil {
		return err
	}
	return ensureTable(m.table, m.o.Bridge, m.o.Subnet)
}

// ipForward turns on IPv4 forwarding, which routing jobs' traffic out
// through the host needs. It stays on: other jobs, or other software, may
// rely on it by then.
func ipForward(log hclog.Logger) error {
	const p = "/proc/sys/net/ipv4/ip_forward"
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	if strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enable IP forwarding (%s): %w", p, err)
	}
	// A warning, so it shows at the default log level: it changes how
	// the whole host treats packets.
	log.Warn("enabled IPv4 forwarding (net.ipv4.ip_forward=1) for bridge networking; it stays on")
	return nil
}

// ensureBridge makes the bridge with the gateway address and brings it up.
func ensureBridge(name string, gw netip.Prefix) error {
	br, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return fmt.Errorf("bridge %s: %w", name, err)
		}
		if err := checkOverlap(gw.Masked()); err != nil {
			return err
		}
		br = &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
		if br, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("bridge %s: %w", name, err)
		}
		// No IPv6 on the bridge: jobs get none, and a link-local
		// address would be one more way to the host.
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1\n"), 0o644)
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return fmt.Errorf("bridge %s: a %s link of that name exists", name, br.Type())
	}
	addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return netlink.AddrList(br, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("bridge %s: list addresses: %w", name, err)
	}
	have := false
	for _, a := range addrs {
		if a.IPNet.String() == gw.String() {
			have = true
		}
	}
	if !have {
		if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: ipNet(gw)}); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("bridge %s: add %s: %w", name, gw, err)
		}
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(br); err != nil {
			return fmt.Errorf("bridge %s: up: %w", name, err)
		}
	}
	return nil
}

// checkOverlap refuses a subnet that overlaps a route the host already
// has: jobs' traffic would go to the wrong place, or the host's would go
// to jobs.
func checkOverlap(subnet netip.Prefix) error {
	routes, err := nldump.Retry(func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue // a default route overlaps everything by design
		}
		ones, _ := r.Dst.Mask.Size()
		a, ok := netip.AddrFromSlice(r.Dst.IP.To4())
		if !ok || ones == 0 {
			continue
		}
		if dst := netip.PrefixFrom(a, ones).Masked(); dst.Overlaps(subnet) {
			name := fmt.Sprint(r.LinkIndex)
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				name = l.Attrs().Name
			}
			return fmt.Errorf("jobs' subnet %s overlaps the host's route to %s on %s: choose another in the agent config (network { subnet = \"...\" })", subnet, dst, name)
		}
	}
	return nil
}

// uplinkMTU is the MTU of the host's default route's link, which jobs'
// packets leave through: a job with a larger one would send packets the
// uplink must fragment or drop. 1500 if there is no default route.
func uplinkMTU() int {
	routes, err := nldump.Retry(func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return 1500
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().MTU > 0 {
				return l.Attrs().MTU
			}
		}
	}
	return 1500
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// vethName is the host end of a job's veth pair: "jr" and 13 hex digits of
// a hash of owner and id, within the 15 characters a name may have.
func vethName(ownerTag, id string) string {
	sum := sha256.Sum256([]byte(ownerTag + "/" + id))
	return "jr" + hex.EncodeToString(sum[:])[:13]
}

// link makes the veth pair, its host end in the bridge (isolated, so jobs
// see no frames of each other) and its job end eth0 in the namespace, with
// the job's address and a default route through the bridge.
func (m *Manager) link(n *Net) error {
	ns, err := netns.GetFromPath(n.Path)
	if err != nil {
		return fmt.Errorf("open %s: %w", n.Path, err)
	}
	defer ns.Close()
	br, err := netlink.LinkByName(m.o.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", m.o.Bridge, err)
	}
	host, alias := vethName(m.tag, n.id), "jobrun "+m.tag+" "+n.id
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: host, MasterIndex: br.Attrs().Index, MTU: uplinkMTU()},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(ns),
	}
	err = netlink.LinkAdd(veth)
	if errors.Is(err, os.ErrExist) && lingering(host, alias) {
		// A torn-down job of the same id whose pair the kernel has not
		// destroyed yet (see teardown): we hold the id's lock, so it is
		// no live job's.
		if err = delLink(host); err == nil {
			err = netlink.LinkAdd(veth)
		}
	}
	if err != nil {
		return fmt.Errorf("create veth %s: %w", host, err)
	}
	hl, err := netlink.LinkByName(host)
	if err != nil {
		return fmt.Errorf("veth %s: %w", host, err)
	}
	// The kernel ignores an alias given at creation.
	if err := netlink.LinkSetAlias(hl, alias); err != nil {
		return fmt.Errorf("veth %s: alias: %w", host, err)
	}
	if err := netlink.LinkSetIsolated(hl, true); err != nil {
		return fmt.Errorf("veth %s: isolate: %w", host, err)
	}
	if err := netlink.LinkSetUp(hl); err != nil {
		return fmt.Errorf("veth %s: up: %w", host, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", n.Path, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("loopback in %s: %w", n.Path, err)
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("eth0 in %s: %w", n.Path, err)
	}
	if err := h.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(n.Addr, m.o.Subnet.Bits()))}); err != nil {
		return fmt.Errorf("address %s on eth0: %w", n.Addr, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("eth0 up: %w", err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: m.gw.AsSlice()}); err != nil {
		return fmt.Errorf("default route via %s: %w", m.gw, err)
	}
	return nil
}

// lingering reports whether the link name is the host end of a torn-down
// job's pair: it has the job's alias.
func lingering(name, alias string) bool {
	l, err := netlink.LinkByName(name)
	return err == nil && l.Attrs().Alias == alias
}

// Teardown removes the job's network: its rules, its namespace (and with
// it the veth pair) and its lease. A namespace given to SetupIn stays, the
// caller's to remove: the veth pair is deleted instead, and with it the
// job's address and routes in there; Teardown takes it down at once (the
// address unreachable) and leaves the deletion, which waits for RCU grace
// periods, running when it returns (Close waits for it). The bridge and
// the table stay for the next job (Manager.Close removes them). Every
// step is tried; calling it again does nothing. The job's containers must be gone: they hold the
// namespace, and with it the veth pair, while they live.
func (n *Net) Teardown() error {
	if n.lock == nil {
		return nil
	}
	if n.m.o.Rootless {
		err := n.teardownRootless()
		n.lock.Release()
		n.lock = nil
		if err != nil {
			return fmt.Errorf("network %s: teardown: %w", n.id, err)
		}
		return nil
	}
	err := n.m.teardown(context.Background(), n.id, n.Comment, n.given)
	n.lock.Release()
	n.lock = nil
	if err != nil {
		return fmt.Errorf("network %s: teardown: %w", n.id, err)
	}
	return nil
}

// teardown deletes what Setup made for id, whose lock the caller holds,
// as cheaply as it can:
//
//   - the veth pair is not deleted here: unmounting the namespace drops
//     its last reference (the job's containers are gone), and the kernel
//     destroys the namespace and both ends of the pair in its own worker.
//     Deleting the host end by netlink instead costs 12 to 24 ms, the
//     RCU grace periods the unregistering waits for. The host end has no
//     address and is an isolated bridge port, so while it lingers it
//     reaches nothing, and the lease can go at once: a new job on the
//     same address has its own veth. A namespace given to SetupIn
//     (given) outlives this, so there the host end is taken down (out of
//     the bridge's forwarding, ~0.1 ms: the old address answers no ARP
//     and the lease may go at once) while the rules go, and the pair is
//     deleted in the background (12 to 30 ms), by index, so that a new
//     job of the same id and veth name is never the one deleted;
//   - the rules go in one nftables transaction (any deletion waits for an
//     RCU grace period, 10 to 15 ms here), while the namespace is
//     unmounted;
//   - the lease goes last, once the rules that name its address are gone,
//     so a new job on that address never meets them.
func (m *Manager) teardown(ctx context.Context, id, comment string, given bool) error {
	dir := filepath.Join(m.jobs, id)
	var rulesErr error
	var wg sync.WaitGroup
	wg.Go(func() { rulesErr = delJobRules(m.table, comment) })
	var nsErr error
	if given {
		nsErr = m.unlink(vethName(m.tag, id))
	} else {
		nsErr = removeNetNS(filepath.Join(dir, "netns"))
	}
	wg.Wait()
	if err := errors.Join(rulesErr, nsErr); err != nil {
		// The lease stays: its rules may still name its address. Cleanup
		// retries once the lock is free.
		return err
	}
	if err := m.release(ctx, func(l lease) bool { return l.Owner == m.tag && l.ID == id }); err != nil {
		return err
	}
	// The lock file goes with the directory, while still held.
	return os.RemoveAll(dir)
}

// remove deletes what Setup made for id, whose lock the caller holds, for
// Cleanup: unlike teardown it deletes the veth itself, in case something
// else still holds the namespace of a dead process's job. A job of SetupIn
// has no STATE/network/ID/netns: its namespace, wherever it is (gone, or
// still bound by a caller that is to remove it), is never touched, and
// deleting the veth removes the job's address and routes from it.
func (m *Manager) remove(ctx context.Context, id, comment string) error {
	var errs []error
	if err := delJobRules(m.table, comment); err != nil {
		errs = append(errs, err)
	}
	if err := delLink(vethName(m.tag, id)); err != nil {
		errs = append(errs, err)
	}
	dir := filepath.Join(m.jobs, id)
	if err := removeNetNS(filepath.Join(dir, "netns")); err != nil {
		errs = append(errs, err)
	}
	if err := m.release(ctx, func(l lease) bool { return l.Owner == m.tag && l.ID == id }); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		// The lock file goes with the directory, while still held.
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unlink takes the link name down and deletes it in the background
// (Close waits for that), logging a failure: the pair, down and without
// a lease, then goes with the caller's namespace, or with the next Setup
// of the same id (see lingering).
func (m *Manager) unlink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("veth %s: %w", name, err)
	}
	if err := netlink.LinkSetDown(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("veth %s: down: %w", name, err)
	}
	m.unlinking.Go(func() {
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			m.o.Log.Error("delete a torn-down job's veth", "veth", name, "error", err)
		}
	})
	return nil
}

func delLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("veth %s: %w", name, err)
	}
	// ENODEV: gone meanwhile (a torn-down job's, deleted in the
	// background or with its namespace).
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete veth %s: %w", name, err)
	}
	return nil
}

// lockLeases takes the host-wide lock and reads the leases under it; the
// caller calls unlock when done with them.
func (m *Manager) lockLeases(ctx context.Context) (_ leases, unlock func(), _ error) {
	l, err := lockfile.Acquire(ctx, filepath.Join(m.o.Dir, "lock"))
	if err != nil {
		return nil, nil, err
	}
	ls, err := readLeases(m.leaseFile())
	if err != nil {
		l.Release()
		return nil, nil, err
	}
	return ls, func() { l.Release() }, nil
}

// release drops the leases that drop selects, under the host-wide lock.
func (m *Manager) release(ctx context.Context, drop func(lease) bool) error {
	ls, unlock, err := m.lockLeases(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	changed := false
	for a, v := range ls {
		if drop(v) {
			delete(ls, a)
			changed = true
		}
	}
	if changed {
		if err := ls.write(m.leaseFile()); err != nil {
			return err
		}
	}
	return nil
}

// Close removes the bridge and the table if no job on the host holds a
// lease and no other live Manager (of any process) uses them: the host is
// idle again. Otherwise the last of those Managers to close removes them.
// The Manager's jobs must be torn down. A Manager that never made a
// network changes nothing.
func (m *Manager) Close() error {
	m.unlinking.Wait()
	m.mu.Lock()
	u := m.user
	m.user = nil
	m.mu.Unlock()
	if u == nil {
		return nil
	}
	if err := u.Release(); err != nil {
		return fmt.Errorf("network: close: %w", err)
	}
	if err := m.removeHostIfIdle(context.Background()); err != nil {
		return fmt.Errorf("network: close: %w", err)
	}
	return nil
}

// removeHostIfIdle deletes the table and the bridge, at once (each waits
// for RCU grace periods on its own), if the lease file, read under the
// host-wide lock, holds no lease (Setup makes them under that lock only
// after writing its lease) and no live Manager holds usersFile (it would
// make them again for its next job, tens of milliseconds each time). A
// killed process's lock goes with it.
func (m *Manager) removeHostIfIdle(ctx context.Context) error {
	if _, err := os.Stat(m.leaseFile()); errors.Is(err, os.ErrNotExist) {
		return nil // no job ever ran here: nothing was made
	}
	ls, unlock, err := m.lockLeases(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if len(ls) > 0 {
		return nil
	}
	users, err := lockfile.TryAcquire(m.usersFile())
	if errors.Is(err, lockfile.ErrLocked) {
		return nil
	}
	if err != nil {
		return err
	}
	defer users.Release()
	var tableErr error
	var wg sync.WaitGroup
	wg.Go(func() { tableErr = deleteTable(m.table) })
	bridgeErr := delBridge(m.o.Bridge)
	wg.Wait()
	return errors.Join(tableErr, bridgeErr)
}

func delBridge(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	if _, ok := l.(*netlink.Bridge); !ok {
		return nil
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return nil
}

// Cleanup removes the networks that killed processes left behind: jobs of
// this state dir whose lock is free, and leases of any state dir whose
// job's lock is free (the links and rules of those are removed too). Jobs
// of live processes are not touched. With no lease left and no live
// Manager using them, the bridge and the table go.
func (m *Manager) Cleanup(ctx context.Context) error {
	if m.o.Rootless {
		return m.cleanupRootless(ctx)
	}
	var errs []error
	if err := m.cleanupJobs(ctx); err != nil {
		errs = append(errs, err)
	}
	// Leases of dead jobs of other state dirs (or whose state dir is
	// gone): their namespaces went with their processes or are the other
	// state dir's to unmount (CleanupStateDir), but the host-wide links
	// and rules are ours to remove as much as theirs.
	if err := m.reapLeases(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := m.removeHostIfIdle(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// cleanupJobs is Cleanup's part for this state dir's jobs: those whose
// lock is free lose their rules, link, namespace, lease and directory.
func (m *Manager) cleanupJobs(ctx context.Context) error {
	ents, err := os.ReadDir(m.jobs)
	if err != nil {
		return fmt.Errorf("network cleanup: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("network cleanup: %w", err)
		}
		if !e.IsDir() || !idPattern.MatchString(e.Name()) {
			continue
		}
		lock, err := lockfile.TryAcquire(filepath.Join(m.jobs, e.Name(), "lock"))
		if errors.Is(err, lockfile.ErrLocked) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := m.remove(ctx, e.Name(), RuleComment(m.tag, e.Name())); err != nil {
			errs = append(errs, err)
		} else {
			m.o.Log.Info("removed network left by a dead process", "id", e.Name())
		}
		lock.Release()
	}
	return errors.Join(errs...)
}

func (m *Manager) reapLeases(ctx context.Context) error {
	if _, err := os.Stat(m.leaseFile()); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	ls, err := readLeases(m.leaseFile())
	if err != nil {
		return err
	}
	var errs []error
	dead := map[lease]bool{}
	for _, v := range ls {
		if lockfile.Held(v.Lock) {
			continue
		}
		dead[v] = true
		if err := delJobRules(m.table, RuleComment(v.Owner, v.ID)); err != nil {
			errs = append(errs, err)
		}
		if err := delLink(vethName(v.Owner, v.ID)); err != nil {
			errs = append(errs, err)
		}
	}
	// release re-reads the leases under the lock; a lease whose lock is
	// free then is dead for good (Setup takes the lock before leasing).
	if err := m.release(ctx, func(v lease) bool { return dead[v] && !lockfile.Held(v.Lock) }); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Probe reports whether something accepts TCP connections on port at
// localhost inside the job's namespace, where the job and its services
// live: a service's readiness. It dials once, waiting at most a second.
func (n *Net) Probe(ctx context.Context, port int) error {
	return inNetNS(n.Path, func() error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		// The socket is made on this thread, so in the namespace.
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return err
		}
		return c.Close()
	})
}
