package web

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// sgrOnly matches a text whose every escape is an SGR sequence.
var sgrOnly = regexp.MustCompile(`^(?:[^\x1b]|\x1b\[[0-9;:]*m)*$`)

// FuzzTerminalText: whatever an agent logs, the text log keeps no escape
// but SGR and no control character but tab, and is UTF-8.
func FuzzTerminalText(f *testing.F) {
	for _, s := range []string{
		"\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07", "\x1b[1;31mred\x1b[0m", "\x1bP+q544e\x1b\\",
		"\x1b[31", "10%\r50%", "\x9b2J", "\u009b2J", "tab\there", "\x1b\x1b[m", "\x1b[31$m",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := TerminalText(in)
		if !utf8.ValidString(out) || !sgrOnly.MatchString(out) {
			t.Fatalf("TerminalText(%q) = %q", in, out)
		}
		for _, r := range out {
			if r != '\t' && r != 0x1b && (r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f) {
				t.Fatalf("TerminalText(%q) = %q holds %U", in, out, r)
			}
		}
		if html := string(ANSI(in)); strings.Contains(strings.NewReplacer("<span", "", "</span>", "").Replace(html), "<") {
			t.Fatalf("ANSI(%q) = %q: markup of the text's making", in, html)
		}
	})
}
