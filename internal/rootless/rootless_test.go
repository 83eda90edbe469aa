package rootless

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "subuid")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSubIDsByNameOrUID: shadow's files name a user or its uid; both count,
// in file order, and nobody else's.
func TestSubIDsByNameOrUID(t *testing.T) {
	f := write(t, "# comment\nalice:100000:65536\nbob:165536:65536\n\n1001:300000:1000\n")
	got, err := SubIDs(f, "alice", 1001)
	if err != nil {
		t.Fatal(err)
	}
	want := []Range{{100000, 65536}, {300000, 1000}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got, _ := SubIDs(f, "carol", 1002); len(got) != 0 {
		t.Errorf("carol: %v", got)
	}
	if got, err := SubIDs(filepath.Join(t.TempDir(), "none"), "alice", 1); err != nil || len(got) != 0 {
		t.Errorf("missing file: %v, %v", got, err)
	}
}

// TestSubIDsBadLine names the file and line.
func TestSubIDsBadLine(t *testing.T) {
	for _, line := range []string{"alice:100000", "alice:x:10", "alice:1:0", "alice:4294967295:2"} {
		f := write(t, "bob:1:1\n"+line+"\n")
		_, err := SubIDs(f, "alice", 1)
		if err == nil || !strings.Contains(err.Error(), f+":2:") {
			t.Errorf("%q: %v", line, err)
		}
	}
}

// TestFreeRange proposes an aligned range above every entry of both files.
func TestFreeRange(t *testing.T) {
	a := write(t, "alice:100000:65536\n")
	b := write(t, "bob:200000:70000\n")
	r, err := FreeRange(65536, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Start != 327680 || r.Count != 65536 {
		t.Errorf("got %+v, want 327680+65536", r)
	}
	if r, _ := FreeRange(65536); r.Start != 131072 {
		t.Errorf("no entries: %+v, want the first aligned block above 100000", r)
	}
}

// TestMapArgs maps 0 to the user and the ranges one after the other.
func TestMapArgs(t *testing.T) {
	got := strings.Join(MapArgs(1000, []Range{{100000, 65536}, {300000, 10}}), " ")
	if want := "0 1000 1 1 100000 65536 65537 300000 10"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestInUserNS: the test runs in the initial namespace (a positive control
// is TestRootlessIDs in cmd/jobrun, whose job runs in one).
func TestInUserNS(t *testing.T) {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		t.Fatal(err)
	}
	initial := strings.Join(strings.Fields(string(b)), " ") == "0 0 4294967295"
	if InUserNS() == initial {
		t.Errorf("InUserNS() = %v with uid_map %q", InUserNS(), b)
	}
}
