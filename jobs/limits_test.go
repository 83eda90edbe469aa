package jobs

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestLimits feeds inputs that would make HCL's recursive parser overflow
// the stack (a fatal error, not a panic) and checks they are refused
// with a diagnostic, while ordinary nesting and operators pass.
func TestLimits(t *testing.T) {
	job := func(expr string) string {
		return "job \"a\" {\n  image = \"busybox\"\n  env = { X = " + expr + " }\n  step \"x\" { run = \"true\" }\n}\n"
	}
	const n = 100000
	for name, tc := range map[string]struct {
		src, want string
	}{
		"brackets":  {job(strings.Repeat("[", n) + strings.Repeat("]", n)), "Too deeply nested"},
		"templates": {job(`"` + strings.Repeat("${", n) + `"`), "Too deeply nested"},
		"splats":    {job("a" + strings.Repeat("[*]", n)), "Too many operators"},
		"unary":     {job(strings.Repeat("!", n) + "true"), "Too many operators"},
		"binary":    {job(strings.Repeat("1 + ", n) + "1"), "Too many operators"},
		"ifs":       {job(`"` + strings.Repeat("%{if true}", n) + `"`), "Too many operators"},
		"size":      {job(`"` + strings.Repeat("x", MaxFileSize) + `"`), "Job file too large"},
	} {
		start := time.Now()
		diags := parseErr(t, tc.src)
		t.Logf("%s: %v", name, time.Since(start))
		if len(diags) != 1 || diags[0].Summary != tc.want || diags[0].Subject == nil {
			t.Errorf("%s: diags = %v, want %q", name, diags, tc.want)
		}
	}
	var many strings.Builder
	for i := 0; i < 5; i++ {
		fmt.Fprintf(&many, "job \"j%d\" {\n  image = \"busybox\"\n  matrix {\n    a = [%s]\n  }\n  step \"x\" { run = \"true\" }\n}\n",
			i, values(250))
	}
	diags := parseErr(t, many.String())
	if len(diags) != 1 || diags[0].Summary != "Too many jobs" || diags[0].Subject.Start.Line != 29 {
		t.Errorf("many jobs: %v", diags)
	}
	// Controls: nesting and operators within the limits parse.
	parse(t, job(`"${"${"${"x"}"}"}"`))
	parse(t, job(`"${1 + 2 * 3 - (4 - 1)}"`))
	parse(t, job(`"%{if true}yes%{else}no%{endif}"`))
	deep := `"x"`
	for i := 0; i < 20; i++ {
		deep = `"${` + deep + `}"`
	}
	parse(t, job(deep))
}

// values is a list of n distinct quoted values.
func values(n int) string {
	v := make([]string, n)
	for i := range v {
		v[i] = fmt.Sprintf("%q", fmt.Sprint(i))
	}
	return strings.Join(v, ", ")
}
