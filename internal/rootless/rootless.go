// Package rootless holds what `jobrun local` needs to run jobs without
// root: whether this process runs in a user namespace of its own, the
// invoking user's subordinate id ranges (/etc/subuid, /etc/subgid) and the
// mapping newuidmap and newgidmap write from them.
//
// The model is rootless podman's: the unprivileged jobrun re-executes
// itself in a new user namespace (with a mount namespace of its own) in
// which it is root, mapped from the user's own uid (as 0) and their
// subordinate ranges (1 and up); from there on the rootful code runs
// nearly unchanged, minus what only the host's root may do (cgroups
// without delegation, trusted.* xattrs, bridge networking).
package rootless

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// InUserNS reports whether this process runs in a user namespace other
// than the initial one: its uid_map is not the identity over all ids.
func InUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}

// Range is one subordinate id range: Count ids from Start.
type Range struct {
	Start, Count uint32
}

// SubIDs returns the ranges file (an /etc/subuid or /etc/subgid) gives
// the user, named either by name or by uid as shadow's tools accept. A
// missing file means no ranges.
func SubIDs(file, name string, uid int) ([]Range, error) {
	all, err := readSubIDs(file)
	if err != nil {
		return nil, err
	}
	var out []Range
	for _, e := range all {
		if e.owner == name || e.owner == strconv.Itoa(uid) {
			out = append(out, e.Range)
		}
	}
	return out, nil
}

type subEntry struct {
	owner string
	Range
}

func readSubIDs(file string) ([]subEntry, error) {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("subordinate ids: %w", err)
	}
	defer f.Close()
	var out []subEntry
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := strings.Split(line, ":")
		if len(p) != 3 {
			return nil, fmt.Errorf("%s:%d: want NAME:START:COUNT, got %q", file, n, line)
		}
		start, err1 := strconv.ParseUint(p[1], 10, 32)
		count, err2 := strconv.ParseUint(p[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count > 1<<32 {
			return nil, fmt.Errorf("%s:%d: bad range %q", file, n, line)
		}
		out = append(out, subEntry{p[0], Range{uint32(start), uint32(count)}})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("subordinate ids: %s: %w", file, err)
	}
	return out, nil
}

// FreeRange proposes a range of size ids that no entry of the files
// holds, above 100000 and aligned to size, as a `usermod --add-subuids`
// suggestion.
func FreeRange(size uint32, files ...string) (Range, error) {
	end := uint64(100000)
	for _, file := range files {
		all, err := readSubIDs(file)
		if err != nil {
			return Range{}, err
		}
		for _, e := range all {
			end = max(end, uint64(e.Start)+uint64(e.Count))
		}
	}
	start := (end + uint64(size) - 1) / uint64(size) * uint64(size)
	if start+uint64(size) > 1<<32 {
		return Range{}, errors.New("subordinate ids: no free range left")
	}
	return Range{uint32(start), size}, nil
}

// MapArgs are the newuidmap/newgidmap arguments (after the pid) that map
// id 0 of the namespace to own and ids 1 and up to ranges, in order.
func MapArgs(own int, ranges []Range) []string {
	args := []string{"0", strconv.Itoa(own), "1"}
	next := uint64(1)
	for _, r := range ranges {
		args = append(args, strconv.FormatUint(next, 10), strconv.FormatUint(uint64(r.Start), 10), strconv.FormatUint(uint64(r.Count), 10))
		next += uint64(r.Count)
	}
	return args
}
