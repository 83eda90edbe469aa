package agent

import (
	"strings"
	"testing"
)

// FuzzMaskStream cuts a line at two offsets the fuzzer picks: masked as a
// stream it is the whole line masked, and the secret does not show.
func FuzzMaskStream(f *testing.F) {
	f.Add("pw=hunter2 and hun\x1b[31mter2 \x1b]8;;x\x1b\\", "hunter2", uint16(5), uint16(20))
	f.Add("\x1b[1mh\x1b[0mu\x1b[2Knter2", "hunter2", uint16(3), uint16(9))
	f.Add("aaaaaaaaaa", "aaa", uint16(1), uint16(2))
	f.Fuzz(func(t *testing.T, line, secret string, i, j uint16) {
		if visible(secret) == "" || strings.ContainsAny(secret, "\n") {
			return
		}
		m := newMasker([]string{secret})
		a, b := min(int(i), len(line)), min(int(j), len(line))
		if a > b {
			a, b = b, a
		}
		whole := m.mask(line)
		if got := maskedAcross(m, line, a, b); got != whole {
			t.Fatalf("cut at %d and %d: %q, want %q", a, b, got, whole)
		}
		// (A secret with a * in it may be made anew by the mask and its neighbours.)
		if !strings.Contains(secret, "*") && strings.Contains(visible(whole), visible(secret)) {
			t.Fatalf("mask(%q) = %q shows %q", line, whole, secret)
		}
	})
}
