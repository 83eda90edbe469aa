package agent

import (
	"sort"
	"strings"
)

// masker replaces secret values in job output with ***. A multi-line
// secret (a key file, say) is also masked line by line, because output
// arrives one line at a time.
//
// Secrets are looked for in the text as a terminal shows it: escape
// sequences (colours, cursor movement) are skipped, so a secret split by
// one is masked too, escapes and all. A line cut into pieces (longer than
// maxLine) is masked as one stream by a maskStream.
type masker struct {
	vals []string // visible forms, longest first
	max  int      // the longest value's length
}

// minMaskedPart keeps a multi-line secret's short lines (a lone "}" or a
// blank line) from masking unrelated output.
const minMaskedPart = 4

// maxEscape bounds an escape sequence still waiting for its end at a
// piece's end; a longer one is taken as text.
const maxEscape = 256

func newMasker(secrets []string) *masker {
	var vals []string
	seen := map[string]bool{}
	add := func(s string) {
		// A secret holding escape sequences is looked for as it shows.
		s = visible(s)
		if s != "" && !seen[s] {
			seen[s] = true
			vals = append(vals, s)
		}
	}
	for _, s := range secrets {
		add(s)
		if strings.Contains(s, "\n") {
			for _, part := range strings.Split(s, "\n") {
				if part = strings.TrimSpace(part); len(part) >= minMaskedPart {
					add(part)
				}
			}
		}
	}
	// Longest first, so a secret containing another is masked whole.
	sort.SliceStable(vals, func(i, j int) bool { return len(vals[i]) > len(vals[j]) })
	m := &masker{vals: vals}
	if len(vals) > 0 {
		m.max = len(vals[0])
	}
	return m
}

// mask masks a whole text.
func (m *masker) mask(s string) string {
	out, _ := m.scan(s, true)
	return out
}

// scan masks s. Unless final, s is followed by more of the same line, so
// its tail that a secret may go on from (up to the longest secret's length
// less one, with the escapes among it, or an escape sequence not yet
// ended) comes back unmasked as held, to be scanned again in front of the
// next piece; out is the rest, masked.
func (m *masker) scan(s string, final bool) (out, held string) {
	if len(m.vals) == 0 {
		return s, ""
	}
	vis, pos, end := layout(s, final)
	// Matches are taken leftmost first, the longest at a position, as
	// strings.Replacer takes them. One that starts before safe is whole in
	// vis whatever comes next; later ones wait for the next piece.
	safe := len(vis)
	if !final {
		safe = len(vis) - (m.max - 1)
	}
	type match struct{ a, b int }
	var ms []match
	next := make([]int, len(m.vals)) // where each value is next found, from at
	for i := range next {
		next[i] = -2
	}
	for at := 0; at < safe; {
		best, bi := -1, -1
		for i, v := range m.vals {
			if next[i] == -1 {
				continue // not in the rest
			}
			if next[i] < at {
				if j := strings.Index(vis[at:], v); j >= 0 {
					next[i] = at + j
				} else {
					next[i] = -1
					continue
				}
			}
			if best < 0 || next[i] < best {
				best, bi = next[i], i
			}
		}
		if best < 0 || best >= safe {
			break
		}
		ms = append(ms, match{best, best + len(m.vals[bi])})
		at = best + len(m.vals[bi])
	}
	cut := max(safe, 0)
	if len(ms) > 0 {
		cut = max(cut, ms[len(ms)-1].b)
	}
	raw := end
	if cut < len(vis) {
		raw = pos(cut)
	}
	if len(ms) == 0 {
		return s[:raw], s[raw:]
	}
	var b strings.Builder
	b.Grow(raw)
	last := 0
	for _, x := range ms {
		b.WriteString(s[last:pos(x.a)])
		b.WriteString("***")
		last = pos(x.b-1) + 1
	}
	b.WriteString(s[last:raw])
	return b.String(), s[raw:]
}

// layout returns the text of s as a terminal shows it (without escape
// sequences), the index in s of each of its bytes, and where in s an
// escape sequence starts that has not ended by its end (len(s) if none,
// or if final).
func layout(s string, final bool) (vis string, pos func(int) int, end int) {
	if strings.IndexByte(s, 0x1b) < 0 {
		return s, func(i int) int { return i }, len(s)
	}
	// The visible text is runs of s between escapes: run k starts at
	// vis[at[k]] and s[from[k]].
	v := make([]byte, 0, len(s))
	var at, from []int
	text := func(i, j int) {
		if i < j {
			at, from = append(at, len(v)), append(from, i)
			v = append(v, s[i:j]...)
		}
	}
	end = len(s)
	i := 0
	for i < len(s) {
		e := strings.IndexByte(s[i:], 0x1b)
		if e < 0 {
			text(i, len(s))
			break
		}
		text(i, i+e)
		i += e
		n, ok := escapeLen(s[i:])
		if !ok && !final && len(s)-i <= maxEscape {
			end = i
			break
		}
		if n == 0 {
			n = 1 // no escape sequence: ESC is text
			text(i, i+1)
		}
		i += n
	}
	return string(v), func(x int) int {
		k := sort.SearchInts(at, x+1) - 1
		return from[k] + x - at[k]
	}, end
}

// escapeLen returns the length of the escape sequence at the start of s
// (which starts with ESC): a CSI sequence (ESC [, parameters and
// intermediates, a final byte) or ESC, intermediates and a final byte
// (ESC ], the start of an OSC, is one: its text is visible, so a secret
// in a hyperlink is masked). ok is false if s ends before the sequence
// does; n is 0 if it is no escape sequence (ESC is then text).
func escapeLen(s string) (n int, ok bool) {
	if len(s) < 2 {
		return 0, false
	}
	if s[1] == '[' {
		for i := 2; i < len(s); i++ {
			switch c := s[i]; {
			case c >= 0x20 && c <= 0x3f:
			case c >= 0x40 && c <= 0x7e:
				return i + 1, true
			default:
				return 0, true
			}
		}
		return 0, false
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 0x20 && c <= 0x2f:
		case c >= 0x30 && c <= 0x7e:
			return i + 1, true
		default:
			return 0, true
		}
	}
	return 0, false
}

// visible is s without its escape sequences.
func visible(s string) string {
	v, _, _ := layout(s, true)
	return v
}

// maxHeld bounds what a maskStream holds back: only a line of escape
// sequences around a secret's start could make it hold more.
const maxHeld = 2 * maxLine

// maskStream masks one line that arrives in pieces, carrying the tail a
// secret may go on from into the next piece.
type maskStream struct {
	m    *masker
	held string
}

// piece masks the next piece of the line; more says the line goes on. It
// returns what may be logged now.
func (s *maskStream) piece(text string, more bool) string {
	out, held := s.m.scan(s.held+text, !more)
	if len(held) > maxHeld {
		out, held = out+s.m.mask(held), ""
	}
	s.held = held
	return out
}
