package idrange

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// entry is one line of /etc/subuid or /etc/subgid: owner may hold the host
// ids start to start+count-1 (subuid(5)).
type entry struct {
	owner        string
	start, count uint64
	file         string
	line         int
}

func (e entry) end() uint64 { return e.start + e.count } // one past the last id

func (e entry) where() string { return fmt.Sprintf("%s:%d", e.file, e.line) }

func (e entry) String() string {
	return fmt.Sprintf("%s's %d-%d (%s)", e.owner, e.start, e.end()-1, e.where())
}

// maxID is one past the highest id a range may hold: (uid_t)-1 is no id.
const maxID = 1<<32 - 1

// readSubIDs parses a subordinate id file. A missing file has no entries.
// Blank lines and lines starting with '#' are skipped; anything else must be
// NAME:START:COUNT with a count above zero and no id past 4294967294.
func readSubIDs(path string) ([]entry, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	var out []entry
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		e, err := parseEntry(s)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		e.file, e.line = path, n
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

func parseEntry(s string) (entry, error) {
	f := strings.Split(s, ":")
	if len(f) != 3 {
		return entry{}, fmt.Errorf("%q: want NAME:START:COUNT", s)
	}
	if f[0] == "" {
		return entry{}, fmt.Errorf("%q: empty user name", s)
	}
	start, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return entry{}, fmt.Errorf("%q: start %q is not an id", s, f[1])
	}
	count, err := strconv.ParseUint(f[2], 10, 32)
	if err != nil || count == 0 {
		return entry{}, fmt.Errorf("%q: count %q is not a positive number", s, f[2])
	}
	if start+count > maxID {
		return entry{}, fmt.Errorf("%q: the range ends past the highest id %d", s, uint64(maxID-1))
	}
	return entry{owner: f[0], start: start, count: count}, nil
}

// mine splits entries into the user's (by name or by uid, both of which
// subuid(5) allows) and everyone else's, and refuses entries of the user
// that overlap each other or another user's, or hold id 0 (the host's root).
func mine(entries []entry, name, uid string) (own, other []entry, err error) {
	for _, e := range entries {
		if e.owner == name || (uid != "" && e.owner == uid) {
			own = append(own, e)
		} else {
			other = append(other, e)
		}
	}
	for i, e := range own {
		if e.start == 0 {
			return nil, nil, fmt.Errorf("%s: %s holds id 0: a job's root would be the host's root", e.where(), e)
		}
		for _, o := range own[:i] {
			if overlap(e, o) {
				return nil, nil, fmt.Errorf("%s: %s overlaps %s", e.where(), e, o)
			}
		}
		for _, o := range other {
			if overlap(e, o) {
				return nil, nil, fmt.Errorf("%s: %s overlaps %s: give %s a range of its own", e.where(), e, o, name)
			}
		}
	}
	return own, other, nil
}

func overlap(a, b entry) bool { return a.start < b.end() && b.start < a.end() }

// blocks lists the starts of the whole Size-id blocks the entries hold, in
// file order.
func blocks(own []entry) []uint32 {
	var out []uint32
	for _, e := range own {
		for s := e.start; s+Size <= e.end(); s += Size {
			out = append(out, uint32(s))
		}
	}
	return out
}

// nextFree is where a new entry of count ids may start in a file holding
// entries: above every entry and every host id of the kind (hosts) from
// firstID up, and at least firstID, aligned to Size.
func nextFree(entries []entry, hosts []account, count uint64) (uint64, error) {
	start := uint64(firstID)
	for _, e := range entries {
		start = max(start, e.end())
	}
	for _, a := range hosts {
		if a.id >= firstID {
			start = max(start, a.id+1)
		}
	}
	start = (start + Size - 1) / Size * Size
	if start+count > maxID {
		return 0, fmt.Errorf("no room for %d more ids above the existing entries and ids (they end at %d)", count, start)
	}
	return start, nil
}

// appendEntry is content with NAME:START:COUNT added as its last line.
func appendEntry(content []byte, name string, start, count uint64) []byte {
	if len(content) > 0 && content[len(content)-1] != '\n' {
		content = append(content, '\n')
	}
	return fmt.Appendf(content, "%s:%d:%d\n", name, start, count)
}
