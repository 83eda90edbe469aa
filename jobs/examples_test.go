package jobs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

const examplesDir = "../examples"

// exampleFiles returns the job files under examples/, valid and invalid.
func exampleFiles(t testing.TB) (valid, invalid []string) {
	t.Helper()
	err := filepath.WalkDir(examplesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".ci.hcl") {
			return nil
		}
		if strings.Contains(filepath.ToSlash(p), "/invalid/") {
			invalid = append(invalid, p)
		} else {
			valid = append(valid, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return valid, invalid
}

func TestExamplesValidate(t *testing.T) {
	valid, _ := exampleFiles(t)
	if len(valid) < 4 {
		t.Fatalf("found %d valid examples, want at least hello, go, matrix and artifacts", len(valid))
	}
	for _, p := range valid {
		t.Run(filepath.Base(filepath.Dir(p)), func(t *testing.T) {
			f, diags := Load(p)
			if len(diags) > 0 {
				var b strings.Builder
				WriteDiagnostics(&b, diags, f, false)
				t.Fatalf("%s does not validate:\n%s", p, b.String())
			}
			if len(f.Jobs) == 0 {
				t.Fatalf("%s has no jobs", p)
			}
		})
	}
}

// want is an expected diagnostic written in an invalid example as
// `# want LINE:COL "substring of summary or detail"`.
type want struct {
	line, col int
	text      string
}

var wantRe = regexp.MustCompile(`#\s*want\s+(\d+):(\d+)\s+("(?:[^"\\]|\\.)*")`)

func parseWants(t *testing.T, src []byte) []want {
	var ws []want
	for _, m := range wantRe.FindAllStringSubmatch(string(src), -1) {
		line, _ := strconv.Atoi(m[1])
		col, _ := strconv.Atoi(m[2])
		text, err := strconv.Unquote(m[3])
		if err != nil {
			t.Fatalf("bad want %s: %v", m[0], err)
		}
		ws = append(ws, want{line, col, text})
	}
	return ws
}

func (w want) matches(d *hcl.Diagnostic) bool {
	return d.Subject != nil && d.Subject.Start.Line == w.line && d.Subject.Start.Column == w.col &&
		(strings.Contains(d.Summary, w.text) || strings.Contains(d.Detail, w.text))
}

// TestInvalidExamples checks that each invalid example produces exactly
// the diagnostics its want comments list: none missing, none extra.
func TestInvalidExamples(t *testing.T) {
	_, invalid := exampleFiles(t)
	if len(invalid) < 10 {
		t.Fatalf("found %d invalid examples", len(invalid))
	}
	for _, p := range invalid {
		t.Run(filepath.Base(p), func(t *testing.T) {
			src, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			wants := parseWants(t, src)
			if len(wants) == 0 {
				t.Fatalf("%s has no want comments", p)
			}
			f, diags := Parse(p, src)
			if !diags.HasErrors() {
				t.Fatalf("%s: no errors", p)
			}
			used := make([]bool, len(diags))
			for _, w := range wants {
				found := false
				for i, d := range diags {
					if !used[i] && w.matches(d) {
						used[i], found = true, true
						break
					}
				}
				if !found {
					t.Errorf("%s: missing diagnostic %d:%d %q", p, w.line, w.col, w.text)
				}
			}
			for i, d := range diags {
				if !used[i] {
					t.Errorf("%s: unexpected diagnostic %s: %s: %s", p, d.Subject, d.Summary, d.Detail)
				}
				if d.Subject == nil || d.Subject.Filename != p {
					t.Errorf("%s: diagnostic %q has no subject in the file", p, d.Summary)
				}
			}
			if t.Failed() {
				var b strings.Builder
				WriteDiagnostics(&b, diags, f, false)
				t.Log("\n" + b.String())
			}
		})
	}
}

// BenchmarkParse parses each valid example, the work a scheduler does per
// push.
func BenchmarkParse(b *testing.B) {
	valid, _ := exampleFiles(b)
	srcs := make([][]byte, len(valid))
	for i, p := range valid {
		src, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		srcs[i] = src
	}
	b.ResetTimer()
	for b.Loop() {
		for i, src := range srcs {
			if _, diags := Parse(valid[i], src); diags.HasErrors() {
				b.Fatal(diags)
			}
		}
	}
}
