package web

import (
	"fmt"
	"html"
	"html/template"
	"strconv"
	"strings"
	"unicode/utf8"
)

// sgr is the graphic state ANSI SGR sequences set: what a span of log
// text looks like.
type sgr struct {
	bold, dim, italic, underline bool
	// fg and bg are "" (default), a palette class suffix ("1", "9",
	// "208") or an RGB colour "#rrggbb".
	fg, bg string
}

func (s sgr) plain() bool { return s == sgr{} }

// open writes the span that gives text the state s. Only class names
// from a fixed set and colours built from numbers are written, never text
// from the log.
func (s sgr) open(b *strings.Builder) {
	var classes []string
	var style []string
	if s.bold {
		classes = append(classes, "b")
	}
	if s.dim {
		classes = append(classes, "d")
	}
	if s.italic {
		classes = append(classes, "i")
	}
	if s.underline {
		classes = append(classes, "u")
	}
	for _, c := range []struct{ prefix, v string }{{"f", s.fg}, {"g", s.bg}} {
		switch {
		case c.v == "":
		case strings.HasPrefix(c.v, "#"):
			prop := "color"
			if c.prefix == "g" {
				prop = "background-color"
			}
			style = append(style, prop+":"+c.v)
		default:
			classes = append(classes, c.prefix+c.v)
		}
	}
	b.WriteString("<span")
	if len(classes) > 0 {
		b.WriteString(` class="` + strings.Join(classes, " ") + `"`)
	}
	if len(style) > 0 {
		b.WriteString(` style="` + strings.Join(style, ";") + `"`)
	}
	b.WriteString(">")
}

// ANSI renders a line of terminal output as HTML: SGR colours and
// attributes become spans with classes (the 16 and 256 colour palettes)
// or inline RGB colours; every other escape sequence is dropped, a
// carriage return keeps only what was written after it (progress bars),
// and the text itself is always escaped.
func ANSI(line string) template.HTML {
	if i := strings.LastIndexByte(strings.TrimRight(line, "\r"), '\r'); i >= 0 {
		line = line[i+1:]
	}
	line = strings.TrimRight(line, "\r")
	var b strings.Builder
	var st sgr
	open := false
	text := func(t string) {
		if t == "" {
			return
		}
		if !open && !st.plain() {
			st.open(&b)
			open = true
		}
		b.WriteString(html.EscapeString(t))
	}
	for len(line) > 0 {
		i := strings.IndexByte(line, 0x1b)
		if i < 0 {
			text(line)
			break
		}
		text(line[:i])
		line = line[i:]
		params, final, n := escape(line)
		line = line[n:]
		if final != 'm' {
			continue
		}
		next := st.apply(params)
		if next != st {
			if open {
				b.WriteString("</span>")
				open = false
			}
			st = next
		}
	}
	if open {
		b.WriteString("</span>")
	}
	// Every piece of text went through html.EscapeString; the markup
	// around it is ours.
	return template.HTML(b.String())
}

// escape parses the escape sequence at the start of s and returns a CSI
// sequence's parameters and final byte (0 for anything else) and its
// length. Unterminated sequences run to the end of s.
func escape(s string) (params string, final byte, n int) {
	if len(s) < 2 {
		return "", 0, len(s)
	}
	switch s[1] {
	case '[': // CSI: parameters 0x30-0x3f, intermediates 0x20-0x2f, final 0x40-0x7e
		for i := 2; i < len(s); i++ {
			if c := s[i]; c >= 0x40 && c <= 0x7e {
				return s[2:i], c, i + 1
			}
		}
		return "", 0, len(s)
	case ']', 'P', 'X', '^', '_': // OSC, DCS, SOS, PM, APC: up to BEL or ST (ESC \)
		for i := 2; i < len(s); i++ {
			if s[i] == 0x07 {
				return "", 0, i + 1
			}
			if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\' {
				return "", 0, i + 2
			}
		}
		return "", 0, len(s)
	}
	if s[1] >= 0x80 {
		return "", 0, 1 // no escape: a stray ESC, dropped, before a character kept whole
	}
	return "", 0, 2 // a two-byte escape (ESC 7, ESC =, ...)
}

// apply returns the state after the SGR parameters p ("1;31").
func (s sgr) apply(p string) sgr {
	if p == "" {
		return sgr{}
	}
	codes := strings.Split(strings.ReplaceAll(p, ":", ";"), ";")
	num := func(i int) int {
		if i >= len(codes) {
			return -1
		}
		v, err := strconv.Atoi(codes[i])
		if err != nil {
			return -1
		}
		return v
	}
	for i := 0; i < len(codes); i++ {
		c := num(i)
		switch {
		case c == 0 || codes[i] == "":
			s = sgr{}
		case c == 1:
			s.bold = true
		case c == 2:
			s.dim = true
		case c == 3:
			s.italic = true
		case c == 4:
			s.underline = true
		case c == 22:
			s.bold, s.dim = false, false
		case c == 23:
			s.italic = false
		case c == 24:
			s.underline = false
		case c >= 30 && c <= 37:
			s.fg = strconv.Itoa(c - 30)
		case c >= 90 && c <= 97:
			s.fg = strconv.Itoa(c - 90 + 8)
		case c == 39:
			s.fg = ""
		case c >= 40 && c <= 47:
			s.bg = strconv.Itoa(c - 40)
		case c >= 100 && c <= 107:
			s.bg = strconv.Itoa(c - 100 + 8)
		case c == 49:
			s.bg = ""
		case c == 38 || c == 48:
			var v string
			switch num(i + 1) {
			case 5:
				v = palette256(num(i + 2))
				i += 2
			case 2:
				r, g, bl := num(i+2), num(i+3), num(i+4)
				if r >= 0 && r <= 255 && g >= 0 && g <= 255 && bl >= 0 && bl <= 255 {
					v = fmt.Sprintf("#%02x%02x%02x", r, g, bl)
				}
				i += 4
			default:
				i = len(codes) // malformed: ignore the rest
			}
			if c == 38 {
				s.fg = v
			} else {
				s.bg = v
			}
		}
	}
	return s
}

// palette256 is colour n of the 256-colour palette: a class suffix for
// the 16 basic colours (the stylesheet picks them, as terminals' themes
// do), RGB for the 6x6x6 cube and the grey ramp.
func palette256(n int) string {
	switch {
	case n < 0 || n > 255:
		return ""
	case n < 16:
		return strconv.Itoa(n)
	case n < 232:
		n -= 16
		level := func(v int) int {
			if v == 0 {
				return 0
			}
			return 55 + 40*v
		}
		return fmt.Sprintf("#%02x%02x%02x", level(n/36), level(n/6%6), level(n%6))
	}
	g := 8 + 10*(n-232)
	return fmt.Sprintf("#%02x%02x%02x", g, g, g)
}

// TerminalText makes a line of job output safe to serve as text, which
// people read with cat, less -R or a browser: SGR colours are kept and
// every other escape sequence (OSC 8 hyperlinks, window titles, DCS,
// cursor movement) and control character is dropped, as ANSI drops them;
// a carriage return keeps only what was written after it, and bytes that
// are not UTF-8 become U+FFFD (a stray 0x9b would be a CSI to some
// terminals).
func TerminalText(line string) string {
	if i := strings.LastIndexByte(strings.TrimRight(line, "\r"), '\r'); i >= 0 {
		line = line[i+1:]
	}
	line = strings.ToValidUTF8(strings.TrimRight(line, "\r"), "\uFFFD")
	var b strings.Builder
	for len(line) > 0 {
		r, n := utf8.DecodeRuneInString(line)
		switch {
		case r == 0x1b:
			params, final, m := escape(line)
			if final == 'm' && line[1] == '[' && sgrParams(params) {
				b.WriteString(line[:m])
			}
			n = m
		case r == '\t' || r >= 0x20 && r != 0x7f && (r < 0x80 || r > 0x9f):
			b.WriteString(line[:n])
		}
		line = line[n:]
	}
	return b.String()
}

// sgrParams reports whether p holds only what SGR parameters do.
func sgrParams(p string) bool {
	for i := 0; i < len(p); i++ {
		if c := p[i]; (c < '0' || c > '9') && c != ';' && c != ':' {
			return false
		}
	}
	return true
}
