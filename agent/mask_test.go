package agent

import (
	"fmt"
	"strings"
	"testing"
)

// maskedAcross feeds line to a maskStream cut at the given offsets and
// returns what it logged, joined.
func maskedAcross(m *masker, line string, cuts ...int) string {
	s := &maskStream{m: m}
	var b strings.Builder
	last := 0
	for _, c := range cuts {
		b.WriteString(s.piece(line[last:c], true))
		last = c
	}
	b.WriteString(s.piece(line[last:], false))
	return b.String()
}

// TestMaskingSurvivesEveryCut cuts a line holding secrets, escapes and a
// secret split by an escape at every offset, once and twice: the pieces
// masked as a stream are the whole line masked, and no secret is left.
func TestMaskingSurvivesEveryCut(t *testing.T) {
	key := "-----BEGIN KEY-----\nAAAAsecretline1\n-----END KEY-----"
	m := newMasker([]string{"hunter2", "hunter2extra", key})
	line := "pw=hunter2extra;\x1b[1;31mhunter2\x1b[0m hun\x1b[31mter2 AAAAsecretline1 x hunter2 \x1b]8;;https://h/hunter2\x1b\\link\x1b]8;;\x1b\\ hunter"
	whole := m.mask(line)
	for _, s := range []string{"hunter2", "hun\x1b[31mter2", "AAAAsecretline1"} {
		if strings.Contains(whole, s) {
			t.Fatalf("mask(%q) = %q: %q left", line, whole, s)
		}
	}
	// The control: what is not a secret stays, escapes included.
	for _, s := range []string{"pw=***;", "\x1b[1;31m***\x1b[0m", " x *** ", "link", " hunter"} {
		if !strings.Contains(whole, s) {
			t.Fatalf("mask(%q) = %q: lacks %q", line, whole, s)
		}
	}
	for i := 0; i <= len(line); i++ {
		if got := maskedAcross(m, line, i); got != whole {
			t.Fatalf("cut at %d: %q, want %q", i, got, whole)
		}
		for j := i; j <= len(line); j++ {
			if got := maskedAcross(m, line, i, j); got != whole {
				t.Fatalf("cut at %d and %d: %q, want %q", i, j, got, whole)
			}
		}
	}
}

func TestMaskingSecretSplitByEscape(t *testing.T) {
	m := newMasker([]string{"hunter2"})
	cases := map[string]string{
		"a hun\x1b[31mter2 b":           "a *** b",
		"\x1b[1mh\x1b[0mu\x1b[2Knter2":  "\x1b[1m***",
		"hun\x1b(Bter2":                 "***",
		"hun\x1b[31mter3":               "hun\x1b[31mter3",
		"hun\x1b[31m":                   "hun\x1b[31m",
		"\x1b[31mnothing\x1b[0m secret": "\x1b[31mnothing\x1b[0m secret",
	}
	for in, want := range cases {
		if got := m.mask(in); got != want {
			t.Errorf("mask(%q) = %q, want %q", in, got, want)
		}
	}
	// A secret holding an escape is masked as it shows, with or without.
	m = newMasker([]string{"pass\x1b[0mword"})
	if got := m.mask("x password y pass\x1b[0mword"); got != "x *** y ***" {
		t.Errorf("secret with an escape: %q", got)
	}
}

// collect is a Sink keeping the output lines.
type collect struct{ lines []string }

func (c *collect) Event(e Event) {
	if e.Kind == Output {
		c.lines = append(c.lines, e.Text)
	}
}

// TestLongLineMaskedAcrossCuts writes a line over maxLine through a job's
// output, with a secret placed across the cut at every offset, in writes
// of odd sizes: no event holds the secret, and the text is all there.
func TestLongLineMaskedAcrossCuts(t *testing.T) {
	const secret = "s3cr3t-token-value"
	for off := maxLine - len(secret) - 1; off <= maxLine+1; off++ {
		var c collect
		l := newJobLog("job", &c, []string{secret}, 0)
		w := l.output("step", "stdout")
		line := strings.Repeat("x", off) + secret + strings.Repeat("y", maxLine) + secret + "\n" + "next " + secret + "\n"
		for p := line; len(p) > 0; {
			n := min(len(p), 4093)
			w.Write([]byte(p[:n]))
			p = p[n:]
		}
		w.Close()
		all := strings.Join(c.lines, "")
		if strings.Contains(all, secret) {
			t.Fatalf("offset %d: the secret is in the log", off)
		}
		for _, piece := range c.lines {
			for i := 4; i < len(secret); i++ {
				if strings.HasSuffix(piece, secret[:i]) {
					t.Fatalf("offset %d: a piece ends with the secret's start %q", off, secret[:i])
				}
			}
		}
		want := strings.Repeat("x", off) + "***" + strings.Repeat("y", maxLine) + "***" + "next ***"
		if all != want || c.lines[len(c.lines)-1] != "next ***" {
			t.Fatalf("offset %d: %d lines, %d bytes, want %d", off, len(c.lines), len(all), len(want))
		}
	}
}

func BenchmarkMaskLine(b *testing.B) {
	var secrets []string
	for i := range 20 {
		secrets = append(secrets, fmt.Sprintf("secret-value-%d-abcdef", i))
	}
	m := newMasker(secrets)
	line := strings.Repeat("an ordinary \x1b[32mbuild\x1b[0m log line ", 4)
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		m.mask(line)
	}
}
