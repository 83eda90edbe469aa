package web

import (
	"context"
	"testing"
)

func TestANSI(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain & <b>", "plain &amp; &lt;b&gt;"},
		{"\x1b[31mred\x1b[0m done", `<span class="f1">red</span> done`},
		{"\x1b[1;92mbold bright\x1b[22m still green\x1b[39m", `<span class="b f10">bold bright</span><span class="f10"> still green</span>`},
		{"\x1b[38;5;208morange\x1b[m", `<span style="color:#ff8700">orange</span>`},
		{"\x1b[38;5;3myellow", `<span class="f3">yellow</span>`},
		{"\x1b[48;2;1;2;3mrgb", `<span style="background-color:#010203">rgb</span>`},
		{"\x1b[38;2;999;0;0mbad rgb", "bad rgb"},
		{"\x1b[2K\x1b[1Gcursor moves dropped", "cursor moves dropped"},
		{"\x1b]0;title\x07after osc", "after osc"},
		{"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"},
		{"10%\r50%\r100%", "100%"},
		{"line\r", "line"},
		{"\x1b[31m<script>alert(1)</script>", `<span class="f1">&lt;script&gt;alert(1)&lt;/script&gt;</span>`},
		{"\x1b[31", ""}, // unterminated
		{"\x1b[4;3;45mall\x1b[24;23;49m", `<span class="i u g5">all</span>`},
		{"\x1bP+q544e\x1b\\after dcs \x1b_apc\x1b\\\x1b^pm\x07end", "after dcs end"},
	} {
		if got := string(ANSI(c.in)); got != c.want {
			t.Errorf("ANSI(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestRenderLog(t *testing.T) {
	data := []byte(`{"t":"2026-01-02T03:04:05Z","k":"step","s":"build","x":"build"}
{"t":"2026-01-02T03:04:06Z","k":"out","s":"build","o":"stderr","x":"\u001b[31m<oops>"}
not json
{"t":"2026-01-02T03:04:07Z","k":"out","x":"partial`)
	v, err := tailLog(context.Background(), memLog(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Lines) != 3 || v.Next != 4 || v.Lines[0].N != 1 {
		t.Fatalf("lines %d next %d first %d; want 3 lines numbered 1-3 and 4 next", len(v.Lines), v.Next, v.Lines[0].N)
	}
	if v.Size != int64(len(data)-len(`{"t":"2026-01-02T03:04:07Z","k":"out","x":"partial`)) {
		t.Fatalf("size %d: the partial last line must not count", v.Size)
	}
	if got := string(v.Lines[1].HTML); got != `<span class="f1">&lt;oops&gt;</span>` || v.Lines[1].Stream != "stderr" {
		t.Fatalf("line 2: %q %q", got, v.Lines[1].Stream)
	}
	if got := string(v.Lines[2].HTML); got != "not json" || !v.Lines[2].Time.IsZero() {
		t.Fatalf("line 3: %q", got)
	}
}

func TestTerminalText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain\ttab", "plain\ttab"},
		{"\x1b[1;31mred\x1b[0m", "\x1b[1;31mred\x1b[0m"},
		{"\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07", "click"},
		{"\x1b]0;title\x1b\\after", "after"},
		{"\x1bP+q544e\x1b\\dcs", "dcs"},
		{"\x1b[2J\x1b[1;1Hcleared", "cleared"},
		{"\x1b[31$mbad sgr", "bad sgr"},
		{"bell\x07 bs\x08 del\x7f c1\u009b2J", "bell bs del c12J"},
		{"10%\r50%\r100%", "100%"},
		{"bad \xff utf8", "bad \uFFFD utf8"},
		{"\x1b[31", ""},
	} {
		if got := TerminalText(c.in); got != c.want {
			t.Errorf("TerminalText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
