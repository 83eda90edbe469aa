package jobs

import (
	"io"
	"os"
	"strings"
	"testing"
)

// FuzzParse feeds the parser arbitrary files, seeded with every example.
// Parse must never panic (it turns a panic into an internal-error
// diagnostic, which fails here), and a file it accepts must be a
// consistent plan.
func FuzzParse(f *testing.F) {
	valid, invalid := exampleFiles(f)
	for _, p := range append(valid, invalid...) {
		src, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		file, diags := Parse("fuzz.ci.hcl", src)
		if file == nil {
			t.Fatal("nil File")
		}
		for _, d := range diags {
			if d.Summary == internalError {
				t.Fatalf("internal error: %s", d.Detail)
			}
		}
		if err := WriteDiagnostics(io.Discard, diags, file, true); err != nil {
			t.Fatal(err)
		}
		if diags.HasErrors() {
			return
		}
		checkPlan(t, file)
	})
}

// checkPlan checks what every valid file's plan promises.
func checkPlan(t *testing.T, f *File) {
	pos := map[string]int{}
	ids := map[string]bool{}
	for i, j := range f.Jobs {
		if _, dup := pos[j.Name]; dup {
			t.Fatalf("job %q twice", j.Name)
		}
		pos[j.Name] = i
		if !idRe.MatchString(j.ID) || ids[j.ID] {
			t.Fatalf("job %q: bad or duplicate ID %q", j.Name, j.ID)
		}
		ids[j.ID] = true
		if j.Image == "" || len(j.Steps) == 0 || j.Timeout <= 0 {
			t.Fatalf("job %q: image %q, %d steps, timeout %v", j.Name, j.Image, len(j.Steps), j.Timeout)
		}
		for _, n := range j.Needs {
			if p, ok := pos[n]; !ok || p >= i {
				t.Fatalf("job %q needs %q, which does not come before it", j.Name, n)
			}
		}
		if len(j.Matrix) > 0 && !strings.HasPrefix(j.Name, j.Base+" (") {
			t.Fatalf("matrix job %q of %q", j.Name, j.Base)
		}
	}
	if len(f.Jobs) > 0 {
		if _, err := f.Select(f.Jobs[len(f.Jobs)-1].Name); err != nil {
			t.Fatal(err)
		}
	}
}
