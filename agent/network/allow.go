package network

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The allow-list (Options.Allow) opens exactly one TCP address:port of the
// host each to jobs, off by default: a registry that jobs push to and the
// agent pulls from under the same image reference, say. Every other
// address and port of the host stays closed (the input chain's drop).
//
// On the bridge each job gets, per entry, an accept placed at the head of
// the input chain, before its drop, with the job's comment, so that it
// goes with the job's other rules:
//
//	iifname BRIDGE ip saddr JOB ip daddr ADDR tcp dport PORT accept comment "jobrun OWNER JOB"
//
// Traffic to the host's own addresses never passes the forward chain, so
// the deny-list (forward) does not apply to it: an entry opens the host's
// ADDR:PORT even where a deny range covers ADDR (say deny = 10.0.0.0/8 and
// a registry on the host's 10.1.2.3). An entry naming an address that is
// not the host's opens nothing (New warns of it): traffic to other
// machines is the forward chain's, governed by the deny-list alone.
//
// In rootless mode (rootless.go) there is no host firewall: a job reaches
// the host's non-loopback addresses through pasta anyway, as the user.
// There an entry for one of the host's
// addresses is an accept before the deny-list's drops in the job's output
// chain, so that the two modes agree where a deny range covers ADDR.

// CheckAllow refuses an allow entry a job could not use or that would
// open more than one port of the host: not IPv4, port 0, loopback (a job's
// 127.0.0.1 is its own), or inside the jobs' subnet (the gateway is the
// host; other addresses there are jobs).
func CheckAllow(a netip.AddrPort, subnet netip.Prefix) error {
	ip := a.Addr()
	switch {
	case !ip.Is4():
		return fmt.Errorf("allow %s: want an IPv4 address:port (jobs have no IPv6 route)", a)
	case a.Port() == 0:
		return fmt.Errorf("allow %s: want a port from 1 to 65535", a)
	case ip.IsLoopback():
		return fmt.Errorf("allow %s: a job cannot reach the host's loopback (its 127.0.0.1 is its own); use an address of the host that jobs route to, and have the service listen there", a)
	case ip.IsUnspecified() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("allow %s: want one unicast address of the host", a)
	case subnet.IsValid() && subnet.Contains(ip):
		return fmt.Errorf("allow %s: inside the jobs' subnet %s: the gateway is the host's every port and the rest are jobs; use an address of the host outside it", a, subnet)
	}
	return nil
}

// hostAllows returns the entries of allow whose address is one of the
// host's (this namespace's, now): on the bridge an entry opens the host's
// input chain only, so one naming another machine opens nothing there,
// nor in rootless mode, which accepts only these; New warns of the others.
func hostAllows(allow []netip.AddrPort) ([]netip.AddrPort, error) {
	if len(allow) == 0 {
		return nil, nil
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list the host's addresses: %w", err)
	}
	var out []netip.AddrPort
	for _, a := range allow {
		for _, h := range addrs {
			if ip, ok := netip.AddrFromSlice(h.IP); ok && ip.Unmap() == a.Addr() {
				out = append(out, a)
				break
			}
		}
	}
	return out, nil
}

// tcpTo matches TCP packets to a (IPv4; the caller checks the family).
func tcpTo(a netip.AddrPort) []expr.Any {
	return cat(ipMatch(16, netip.PrefixFrom(a.Addr(), 32)), []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, a.Port())},
	})
}

// allowExprs is the input chain's accept of one allow entry for the job
// at addr on bridge.
func allowExprs(bridge string, addr netip.Addr, a netip.AddrPort) []expr.Any {
	return cat(ifname(expr.MetaKeyIIFNAME, bridge), ipv4(), ipMatch(12, netip.PrefixFrom(addr, 32)),
		tcpTo(a), verdict(expr.VerdictAccept))
}

// allowedPort decodes the "ip daddr == ADDR, tcp dport == PORT" of a rule
// made by allowExprs.
func allowedPort(ex []expr.Any) (netip.AddrPort, bool) {
	var ip netip.Addr
	for i := 0; i+1 < len(ex); i++ {
		p, ok := ex[i].(*expr.Payload)
		if !ok {
			continue
		}
		var c *expr.Cmp
		for _, e := range ex[i+1:] {
			if c, ok = e.(*expr.Cmp); ok {
				break
			}
		}
		if c == nil {
			return netip.AddrPort{}, false
		}
		switch {
		case p.Base == expr.PayloadBaseNetworkHeader && p.Offset == 16 && len(c.Data) == 4:
			ip = netip.AddrFrom4([4]byte(c.Data))
		case p.Base == expr.PayloadBaseTransportHeader && p.Offset == 2 && len(c.Data) == 2 && ip.IsValid():
			return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(c.Data)), true
		}
	}
	return netip.AddrPort{}, false
}

// JobAllows returns, for inspection, the address:ports the input chain
// accepts for the job with comment (Net.Comment), read back from the
// kernel's rules.
func (m *Manager) JobAllows(comment string) ([]netip.AddrPort, error) {
	rules, err := m.chainRules("input", comment)
	var out []netip.AddrPort
	for _, r := range rules {
		if a, ok := allowedPort(r.Exprs); ok {
			out = append(out, a)
		}
	}
	return out, err
}
