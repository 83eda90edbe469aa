package proberecord

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestOnceProbesUnlessRecorded: a pass is recorded and skips the next
// probe with the same key; another key, a failed probe and a key that
// cannot be made all probe (the controls), and only a pass with a key
// is recorded.
func TestOnceProbesUnlessRecorded(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "probe-ok")
	probes := 0
	pass := func() error { probes++; return nil }
	fail := func() error { probes++; return errors.New("probe failed") }
	key := func(k string) func() (string, error) {
		return func() (string, error) { return k, nil }
	}
	noKey := func() (string, error) { return "", errors.New("no key") }

	for _, c := range []struct {
		name   string
		key    func() (string, error)
		probe  func() error
		err    bool
		probed int
		rec    string
	}{
		{"first pass", key("a\n"), pass, false, 1, "a\n"},
		{"recorded pass", key("a\n"), fail, false, 1, "a\n"},
		{"another key fails", key("b\n"), fail, true, 2, "a\n"},
		{"another key passes", key("b\n"), pass, false, 3, "b\n"},
		{"no key", noKey, pass, false, 4, "b\n"},
	} {
		err := Once(rec, c.key, c.probe)
		if (err != nil) != c.err {
			t.Errorf("%s: err %v, want error %v", c.name, err, c.err)
		}
		if probes != c.probed {
			t.Errorf("%s: %d probes, want %d", c.name, probes, c.probed)
		}
		if b, err := os.ReadFile(rec); err != nil || string(b) != c.rec {
			t.Errorf("%s: record %q (%v), want %q", c.name, b, err, c.rec)
		}
	}
	if _, err := os.Stat(rec + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temp record left: %v", err)
	}
}
