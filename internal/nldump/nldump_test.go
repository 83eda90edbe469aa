package nldump

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestRetryReadsAgainWhenInterrupted: an interrupted dump is read again
// until it is whole; other errors and whole reads come back at once; a
// table that never settles gives up with the interruption.
func TestRetryReadsAgainWhenInterrupted(t *testing.T) {
	calls := 0
	v, err := Retry(func() (int, error) {
		calls++
		if calls < 3 {
			return 0, fmt.Errorf("list: %w", netlink.ErrDumpInterrupted)
		}
		return 42, nil
	})
	if v != 42 || err != nil || calls != 3 {
		t.Fatalf("got %d, %v after %d calls; want 42 after 3", v, err, calls)
	}

	boom := errors.New("boom")
	calls = 0
	if _, err := Retry(func() (int, error) { calls++; return 0, boom }); err != boom || calls != 1 {
		t.Fatalf("another error: %v after %d calls, want it at once", err, calls)
	}

	calls = 0
	if _, err := Retry(func() (int, error) { calls++; return 0, netlink.ErrDumpInterrupted }); !errors.Is(err, netlink.ErrDumpInterrupted) || calls != attempts {
		t.Fatalf("never settles: %v after %d calls, want the interruption after %d", err, calls, attempts)
	}
}
