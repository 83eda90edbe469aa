package network

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The firewall is one nftables table of jobrun's own (inet jobrun for the
// default bridge, inet jobrun-BRIDGE for another), so nothing else's rules
// are touched and deleting it removes all of ours:
//
//	table inet jobrun {
//	  chain input {        # the host itself: jobs may not reach it
//	    type filter hook input priority filter
//	    iifname BRIDGE ip saddr JOB ip daddr ADDR tcp dport PORT accept comment "jobrun OWNER JOB"  # per job: the allow-list (allow.go)
//	    iifname BRIDGE ct state established,related accept
//	    iifname BRIDGE drop
//	  }
//	  chain forward {      # jobs' traffic through the host
//	    type filter hook forward priority filter
//	    iifname BRIDGE oifname BRIDGE drop       # job to job
//	    oifname BRIDGE ct state != established,related drop  # in from outside
//	    ip saddr JOB ip daddr RANGE drop comment "jobrun OWNER JOB"  # per job: the deny-list
//	  }
//	  chain postrouting {  # outbound NAT
//	    type nat hook postrouting priority srcnat
//	    ip saddr SUBNET oifname != BRIDGE masquerade
//	  }
//	}
//
// The base chains hold no accept verdict in forward, so the per-job drops
// appended after them always apply. The deny-list is per job because
// processes with different configurations share the table.
const tableName = "jobrun"

// tableFor names the table of bridge: managers with another bridge (and
// lease dir) must not remove the default's table with their last lease.
func tableFor(bridge string) string {
	if bridge == DefaultBridge {
		return tableName
	}
	return tableName + "-" + bridge
}

func table(name string) *nftables.Table {
	return &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
}

// RuleComment is the nft comment on each of a job's rules: "jobrun OWNER
// ID", where OWNER is the owner.Tag of the job's state dir. The leak
// checker and Cleanup find a job's rules by it.
func RuleComment(ownerTag, id string) string {
	return "jobrun " + ownerTag + " " + id
}

// ensureTable creates the table with its base chains and rules in one
// transaction if it does not exist. The caller holds the host-wide lock.
func ensureTable(tname, bridge string, subnet netip.Prefix) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if _, err := c.ListTableOfFamily(tname, nftables.TableFamilyINet); err == nil {
		return nil
	}
	t := c.AddTable(table(tname))
	accept := nftables.ChainPolicyAccept
	input := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	forward := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	rule := func(ch *nftables.Chain, ex ...expr.Any) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ex})
	}
	est := expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED
	rule(input, cat(ifname(expr.MetaKeyIIFNAME, bridge), ctState(est, expr.CmpOpNeq), verdict(expr.VerdictAccept))...)
	rule(input, cat(ifname(expr.MetaKeyIIFNAME, bridge), verdict(expr.VerdictDrop))...)
	rule(forward, cat(ifname(expr.MetaKeyIIFNAME, bridge), ifname(expr.MetaKeyOIFNAME, bridge), verdict(expr.VerdictDrop))...)
	rule(forward, cat(ifname(expr.MetaKeyOIFNAME, bridge), ctState(est, expr.CmpOpEq), verdict(expr.VerdictDrop))...)
	rule(post, cat(ipv4(), ipMatch(12, subnet),
		[]expr.Any{&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifnameBytes(bridge)},
			&expr.Masq{}})...)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: create table inet %s: %w", tname, err)
	}
	return nil
}

// deleteTable removes the table and every rule in it, if it exists.
func deleteTable(tname string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if _, err := c.ListTableOfFamily(tname, nftables.TableFamilyINet); err != nil {
		return nil
	}
	c.DelTable(table(tname))
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: delete table inet %s: %w", tname, err)
	}
	return nil
}

// addJobRules appends the job's deny-list drops to the forward chain and
// puts its allow-list's accepts at the head of the input chain (allow.go),
// all in one transaction, each with the job's comment.
func addJobRules(tname, bridge, comment string, addr netip.Addr, deny []netip.Prefix, allow []netip.AddrPort) error {
	if len(deny) == 0 && len(allow) == 0 {
		return nil
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := table(tname)
	ch := &nftables.Chain{Name: "forward", Table: t}
	ud := userdata.AppendString(nil, userdata.TypeComment, comment)
	for _, p := range deny {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, UserData: ud,
			Exprs: cat(ipv4(), ipMatch(12, netip.PrefixFrom(addr, 32)), ipMatch(16, p), verdict(expr.VerdictDrop))})
	}
	in := &nftables.Chain{Name: "input", Table: t}
	for _, a := range allow {
		c.InsertRule(&nftables.Rule{Table: t, Chain: in, UserData: ud, Exprs: allowExprs(bridge, addr, a)})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: add rules of %s: %w", comment, err)
	}
	return nil
}

// delJobRules deletes every rule of the table carrying comment. A missing
// table has none.
func delJobRules(tname, comment string) error {
	return delRulesWhere(tname, func(got string) bool { return got == comment })
}

// delRulesWhere deletes every rule of the table whose comment satisfies
// match, in one transaction.
func delRulesWhere(tname string, match func(comment string) bool) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t, err := c.ListTableOfFamily(tname, nftables.TableFamilyINet)
	if err != nil {
		return nil
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("nftables: list chains: %w", err)
	}
	n := 0
	for _, ch := range chains {
		if ch.Table.Name != tname {
			continue
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return fmt.Errorf("nftables: list rules of %s: %w", ch.Name, err)
		}
		for _, r := range rules {
			if s, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && match(s) {
				if err := c.DelRule(r); err != nil {
					return fmt.Errorf("nftables: delete rule %d: %w", r.Handle, err)
				}
				n++
			}
		}
	}
	if n == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: delete rules: %w", err)
	}
	return nil
}

// JobRules returns, for inspection, the destination ranges the forward
// chain drops for the job with comment (Net.Comment). It reads the
// kernel's rules back rather than trusting what was sent.
func (m *Manager) JobRules(comment string) ([]netip.Prefix, error) {
	rules, err := m.chainRules("forward", comment)
	var out []netip.Prefix
	for _, r := range rules {
		if p, ok := daddrPrefix(r.Exprs); ok {
			out = append(out, p)
		}
	}
	return out, err
}

// chainRules reads back from the kernel the rules of jobrun's chain that
// carry comment (a job's Net.Comment); none when the table is gone.
func (m *Manager) chainRules(chain, comment string) ([]*nftables.Rule, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	t, err := c.ListTableOfFamily(m.table, nftables.TableFamilyINet)
	if err != nil {
		return nil, nil
	}
	rules, err := c.GetRules(t, &nftables.Chain{Name: chain, Table: t})
	if err != nil {
		return nil, fmt.Errorf("nftables: list rules: %w", err)
	}
	var out []*nftables.Rule
	for _, r := range rules {
		if s, _ := userdata.GetString(r.UserData, userdata.TypeComment); s == comment {
			out = append(out, r)
		}
	}
	return out, nil
}

// daddrPrefix decodes the "ip daddr & MASK == NET" match of a rule made by
// addJobRules.
func daddrPrefix(ex []expr.Any) (netip.Prefix, bool) {
	for i := 0; i+2 < len(ex); i++ {
		p, ok := ex[i].(*expr.Payload)
		if !ok || p.Base != expr.PayloadBaseNetworkHeader || p.Offset != 16 || p.Len != 4 {
			continue
		}
		b, ok1 := ex[i+1].(*expr.Bitwise)
		c, ok2 := ex[i+2].(*expr.Cmp)
		if !ok1 || !ok2 || len(b.Mask) != 4 || len(c.Data) != 4 {
			return netip.Prefix{}, false
		}
		bits := 0
		for _, m := range b.Mask {
			for ; m != 0; m <<= 1 {
				bits++
			}
		}
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(c.Data)), bits), true
	}
	return netip.Prefix{}, false
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func ifnameBytes(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func ifname(key expr.MetaKey, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(name)},
	}
}

// ctState matches when the connection's state has (CmpOpNeq) or lacks
// (CmpOpEq) any of bits.
func ctState(bits uint32, op expr.CmpOp) []expr.Any {
	mask := binary.NativeEndian.AppendUint32(nil, bits)
	zero := make([]byte, 4)
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: zero},
		&expr.Cmp{Op: op, Register: 1, Data: zero},
	}
}

// ipv4 matches IPv4 packets, which an inet table must check before
// reading IPv4 header fields.
func ipv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

// ipMatch matches the IPv4 address at offset (12 source, 16 destination)
// against prefix p.
func ipMatch(offset uint32, p netip.Prefix) []expr.Any {
	p = p.Masked()
	mask := bytes.Repeat([]byte{0}, 4)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	a := p.Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
	}
}

func verdict(k expr.VerdictKind) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: k}}
}
