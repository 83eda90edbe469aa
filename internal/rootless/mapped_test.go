package rootless

import "testing"

// TestContiguousMapped counts ids from 0 up to the first gap, whatever
// the lines' order: own uid only, own uid and a range, a gap.
func TestContiguousMapped(t *testing.T) {
	for _, c := range []struct {
		m    string
		want uint64
	}{
		{"         0       1000          1\n", 1},
		{"         0       1000          1\n         1     100000      65536\n", 65537},
		{"1 100000 65536\n0 1000 1\n", 65537},
		{"0 1000 1\n2 100000 10\n", 1},
		{"1 100000 10\n", 0},
		{"0 0 4294967295\n", 4294967295},
	} {
		got, err := contiguous(c.m)
		if err != nil || got != c.want {
			t.Errorf("%q: got %d, %v; want %d", c.m, got, err, c.want)
		}
	}
	if _, err := contiguous("0 1000\n"); err == nil {
		t.Error("a line of two fields: no error")
	}
}
