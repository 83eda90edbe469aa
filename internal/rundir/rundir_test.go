package rundir

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// TestName: a state dir's run dir is named by the first 8 bytes of its
// path's SHA-256, the same for every spelling of the path, and different
// for another state dir.
func TestName(t *testing.T) {
	const state = "/var/lib/jobrun"
	sum := sha256.Sum256([]byte(state))
	want := hex.EncodeToString(sum[:8])
	for _, p := range []string{state, state + "/", state + "/.", "/var/lib/../lib/jobrun"} {
		if got := Name(p); got != want {
			t.Errorf("Name(%s) = %s, want %s", p, got, want)
		}
	}
	if Name("/var/lib/jobrun2") == want {
		t.Error("two state dirs share a run dir name")
	}
	if got, want := Path("/run/jobrun", state), "/run/jobrun/sandbox/"+want; got != want {
		t.Errorf("Path = %s, want %s", got, want)
	}
}

// TestOf: a path in (or at) a run dir gives back the name Path put there;
// one outside any, or with a malformed name, gives none.
func TestOf(t *testing.T) {
	const state = "/tmp/TestX123/001"
	own := Name(state)
	for _, top := range []string{"/run/jobrun", "/dev/shm/jobrun", "/run/user/1000/jobrun"} {
		dir := Path(top, state)
		for _, p := range []string{dir, dir + "/ns/j-1/user", dir + "/containers/j-1/rootfs"} {
			if name, ok := Of(p); !ok || name != own {
				t.Errorf("Of(%s) = %q, %v; want %q, true", p, name, ok, own)
			}
		}
	}
	for _, p := range []string{
		"/var/lib/jobrun/run/ns/j-1/user",
		"/dev/shm/jobrun/sandbox/short/x",
		"/dev/shm/jobrun/sandbox/0123456789abcdeg/x", // not hex
		"/dev/shm/jobrun/sandbox/",
		"/dev/shm/other/sandbox/0123456789abcdef",
	} {
		if name, ok := Of(p); ok {
			t.Errorf("Of(%s) = %q, true; want no run dir", p, name)
		}
	}
}

// TestOther: a path in another state dir's run dir is another's; one in
// the state dir's own run dir (the control), or in no run dir, is not.
func TestOther(t *testing.T) {
	const state = "/tmp/TestX123/001"
	own := Name(state)
	for _, c := range []struct {
		p     string
		other bool
	}{
		{"/dev/shm/jobrun/sandbox/" + own + "/ns/j-1/user", false},
		{"/run/jobrun/sandbox/" + own + "/containers/j-1/rootfs", false},
		{"/dev/shm/jobrun/sandbox/0123456789abcdef/ns/j-1/user", true},
		{"/run/jobrun/sandbox/0123456789abcdef", true},
		{"/var/lib/jobrun/run/ns/j-1/user", false},
		{"/dev/shm/jobrun/sandbox/short/x", false},
	} {
		if got := Other(c.p, state); got != c.other {
			t.Errorf("Other(%s) = %v, want %v", c.p, got, c.other)
		}
	}
}
