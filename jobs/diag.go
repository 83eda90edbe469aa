package jobs

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
)

// WriteDiagnostics prints diags in HCL's standard layout: the severity and
// summary, where (file:line:col), the source line with the subject marked
// by carets, and the detail. f supplies the source; it may be nil, and
// then no source lines are shown. color adds VT100 colors, for terminals.
func WriteDiagnostics(w io.Writer, diags hcl.Diagnostics, f *File, color bool) error {
	var src []byte
	var path string
	if f != nil {
		src, path = f.src, f.Path
	}
	var b strings.Builder
	for _, d := range diags {
		writeDiagnostic(&b, d, path, src, color)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeDiagnostic(b *strings.Builder, d *hcl.Diagnostic, path string, src []byte, color bool) {
	sev, paint := "Error", "\x1b[1;31m"
	if d.Severity == hcl.DiagWarning {
		sev, paint = "Warning", "\x1b[1;33m"
	}
	if color {
		fmt.Fprintf(b, "%s%s:\x1b[0m \x1b[1m%s\x1b[0m\n\n", paint, sev, d.Summary)
	} else {
		fmt.Fprintf(b, "%s: %s\n\n", sev, d.Summary)
	}
	if s := d.Subject; s != nil {
		fmt.Fprintf(b, "  on %s:%d:%d:\n", s.Filename, s.Start.Line, s.Start.Column)
		if s.Filename == path {
			writeSnippet(b, s, src, color)
		}
		b.WriteString("\n")
	}
	if d.Detail != "" {
		b.WriteString(d.Detail)
		b.WriteString("\n\n")
	}
}

// writeSnippet prints the subject's first line, then carets under the
// subject (to the end of that line if the subject goes on).
func writeSnippet(b *strings.Builder, s *hcl.Range, src []byte, color bool) {
	start, end := s.Start.Byte, s.End.Byte
	if start < 0 || start > len(src) || end < start {
		return
	}
	end = min(end, len(src))
	lineStart := bytes.LastIndexByte(src[:start], '\n') + 1
	lineEnd := len(src)
	if i := bytes.IndexByte(src[start:], '\n'); i >= 0 {
		lineEnd = start + i
	}
	end = min(end, lineEnd)
	line := strings.TrimRight(string(src[lineStart:lineEnd]), "\r")
	num := fmt.Sprintf("%4d: ", s.Start.Line)
	if color && end > start {
		fmt.Fprintf(b, "%s%s\x1b[1;4m%s\x1b[0m%s\n", num, src[lineStart:start], src[start:end], strings.TrimRight(string(src[end:lineEnd]), "\r"))
	} else {
		fmt.Fprintf(b, "%s%s\n", num, line)
	}
	pad := []rune(string(src[lineStart:start]))
	for i, r := range pad {
		if r != '\t' {
			pad[i] = ' '
		}
	}
	n := max(utf8.RuneCount(src[start:end]), 1)
	fmt.Fprintf(b, "%s%s%s\n", strings.Repeat(" ", len(num)), string(pad), strings.Repeat("^", n))
}

// suggest returns ` Did you mean "x"?` for the option closest to given, if
// one is close enough to be a likely typo, or "".
func suggest(given string, options []string) string {
	best, bestDist := "", 3
	if len(given) > 2*maxNameLen {
		return "" // not a typo, and costly to compare
	}
	for _, o := range options {
		if d := levenshtein.Distance(given, o, nil); d < bestDist {
			best, bestDist = o, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}

// errorf records an error diagnostic about rng.
func (p *parser) errorf(rng hcl.Range, summary, format string, args ...any) {
	p.diags = append(p.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  rng.Ptr(),
	})
}

func (p *parser) add(diags hcl.Diagnostics) { p.diags = append(p.diags, diags...) }

// tidy drops repeated diagnostics (a matrix job evaluates its block once
// per combination) and sorts them by position.
func tidy(diags hcl.Diagnostics) hcl.Diagnostics {
	seen := map[string]bool{}
	out := diags[:0:0]
	for _, d := range diags {
		k := fmt.Sprintf("%d|%s|%s", d.Severity, d.Summary, d.Detail)
		if d.Subject != nil {
			k += "|" + d.Subject.String()
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Subject, out[j].Subject
		switch {
		case a == nil || b == nil:
			return a != nil && b == nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		case a.Start.Line != b.Start.Line:
			return a.Start.Line < b.Start.Line
		}
		return a.Start.Column < b.Start.Column
	})
	return out
}
