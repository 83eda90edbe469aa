// Command testreport reads `go test -json` on stdin, prints each failed or
// skipped test's output, and ends with a summary line. It exits non-zero if
// any test failed, any package failed to build, or, under CI (CI=true), any
// test was skipped: a skip there means CI lacks the root, service or tool the
// test needs, and that must not pass as green.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

type event struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

type report struct {
	out             map[string]*strings.Builder // by package/test
	passed, skipped []string
	failed          []string
	pkgFailed       []string
	pkgs            map[string]float64
}

func key(e event) string { return e.Package + " " + e.Test }

func main() {
	r := &report{out: map[string]*strings.Builder{}, pkgs: map[string]float64{}}
	verbose := os.Getenv("TESTREPORT_VERBOSE") != ""
	if err := r.read(os.Stdin, verbose); err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
	os.Exit(r.print(os.Stdout, os.Getenv("CI") == "true"))
}

func (r *report) read(in io.Reader, verbose bool) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// Build errors arrive as plain text, not JSON.
			fmt.Println(sc.Text())
			continue
		}
		k := key(e)
		switch e.Action {
		case "output":
			b := r.out[k]
			if b == nil {
				b = &strings.Builder{}
				r.out[k] = b
			}
			b.WriteString(e.Output)
			if verbose {
				fmt.Print(e.Output)
			}
		case "pass", "fail", "skip":
			if e.Test == "" {
				r.pkgs[e.Package] = e.Elapsed
				if e.Action == "fail" {
					r.pkgFailed = append(r.pkgFailed, e.Package)
				}
				fmt.Printf("%-4s %s %.1fs\n", strings.ToUpper(e.Action), e.Package, e.Elapsed)
				continue
			}
			switch e.Action {
			case "pass":
				r.passed = append(r.passed, k)
				delete(r.out, k)
			case "fail":
				r.failed = append(r.failed, k)
			case "skip":
				r.skipped = append(r.skipped, k)
			}
		}
	}
	return sc.Err()
}

func (r *report) print(w io.Writer, ci bool) int {
	show := func(title string, keys []string) {
		if len(keys) == 0 {
			return
		}
		sort.Strings(keys)
		fmt.Fprintf(w, "\n=== %s (%d)\n", title, len(keys))
		for _, k := range keys {
			fmt.Fprintf(w, "--- %s\n", k)
			if b := r.out[k]; b != nil {
				fmt.Fprint(w, indent(b.String()))
			}
		}
	}
	show("skipped", r.skipped)
	show("failed", r.failed)
	for _, p := range r.pkgFailed {
		if b := r.out[p+" "]; b != nil && !hasPrefixAny(r.failed, p+" ") {
			fmt.Fprintf(w, "\n=== package %s failed\n%s", p, indent(b.String()))
		}
	}
	fmt.Fprintf(w, "\n%d passed, %d failed, %d skipped\n", len(r.passed), len(r.failed), len(r.skipped))
	switch {
	case len(r.failed) > 0 || len(r.pkgFailed) > 0:
		return 1
	case ci && len(r.skipped) > 0:
		fmt.Fprintln(w, "CI=true: a skipped test is a failure (CI must provide root, services and tools)")
		return 1
	case len(r.passed) == 0:
		fmt.Fprintln(w, "no test ran")
		return 1
	}
	return 0
}

func hasPrefixAny(keys []string, p string) bool {
	for _, k := range keys {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			b.WriteString("    " + l)
		}
	}
	return b.String()
}
