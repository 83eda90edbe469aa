package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/jobrun/jobrun/internal/atomicfile"
)

// lease is one job's address in the host-wide lease file.
type lease struct {
	// ID is the job's network id (its container's instance name).
	ID string `json:"id"`
	// Owner is the tag of the state dir the job runs from.
	Owner string `json:"owner"`
	// Lock is the job's lock file: the lease is live while it is held.
	Lock string `json:"lock"`
}

// leases maps an address to the job holding it. It is read and written
// only under the manager's host-wide lock.
type leases map[netip.Addr]lease

func readLeases(path string) (leases, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return leases{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read leases: %w", err)
	}
	var raw map[string]lease
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("read leases %s: %w", path, err)
	}
	l := leases{}
	for k, v := range raw {
		a, err := netip.ParseAddr(k)
		if err != nil {
			return nil, fmt.Errorf("read leases %s: %w", path, err)
		}
		l[a] = v
	}
	return l, nil
}

func (l leases) write(path string) error {
	raw := map[string]lease{}
	for a, v := range l {
		raw[a.String()] = v
	}
	b, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write leases: %w", err)
	}
	if err := atomicfile.Write(filepath.Dir(path), path, b); err != nil {
		return fmt.Errorf("write leases: %w", err)
	}
	return nil
}

// allocate leases the lowest free host address of subnet after the
// gateway to l.
func (l leases) allocate(subnet netip.Prefix, gw netip.Addr, v lease) (netip.Addr, error) {
	last := lastAddr(subnet)
	for a := gw.Next(); a.IsValid() && a.Less(last); a = a.Next() {
		if _, used := l[a]; !used {
			l[a] = v
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no free address in %s: %d jobs hold one", subnet, len(l))
}

// find returns the address leased to id.
func (l leases) find(id string) (netip.Addr, bool) {
	for a, v := range l {
		if v.ID == id {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := 32 - p.Bits()
	for i := 3; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	return netip.AddrFrom4(b)
}
