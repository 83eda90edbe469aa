package rootless

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// MappedIDs is how many ids, from 0 up without a gap, both the uid_map and
// the gid_map of this process's user namespace map: 1 when jobrun runs
// with only the user's own uid mapped (no subordinate ranges), 65537 with
// one 65536-id range. In the initial namespace it is 0: every id.
func MappedIDs() (uint32, error) {
	if !InUserNS() {
		return 0, nil
	}
	var n uint64 = 1 << 32
	for _, f := range []string{"/proc/self/uid_map", "/proc/self/gid_map"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, fmt.Errorf("mapped ids: %w", err)
		}
		c, err := contiguous(string(b))
		if err != nil {
			return 0, fmt.Errorf("mapped ids: %s: %w", f, err)
		}
		n = min(n, c)
	}
	if n == 0 || n >= 1<<32 {
		return 0, fmt.Errorf("mapped ids: id 0 is not mapped, or every id is")
	}
	return uint32(n), nil
}

// contiguous is how many ids a uid_map or gid_map maps from 0 up without
// a gap (its lines may come in any order).
func contiguous(m string) (uint64, error) {
	type line struct{ in, count uint64 }
	var ls []line
	for _, l := range strings.Split(strings.TrimSpace(m), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return 0, fmt.Errorf("bad line %q", l)
		}
		in, err1 := strconv.ParseUint(f[0], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 33)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("bad line %q", l)
		}
		ls = append(ls, line{in, count})
	}
	var next uint64
	for grew := true; grew; {
		grew = false
		for _, l := range ls {
			if l.in == next && l.count > 0 {
				next += l.count
				grew = true
			}
		}
	}
	return next, nil
}

// OwnIDMap is the uid_map or gid_map contents that map id 0 of a new
// namespace to own and nothing else: what an unprivileged user may write
// for a namespace they made without newuidmap (for the gid_map, only
// after "deny" is written to its setgroups file).
func OwnIDMap(own int) string {
	return "0 " + strconv.Itoa(own) + " 1\n"
}
