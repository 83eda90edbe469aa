package testenv

import (
	"os"
	"testing"
	"time"
)

func TestScale(t *testing.T) {
	for _, c := range []struct {
		env  string
		want time.Duration
	}{
		{"", time.Second},
		{"1", time.Second},
		{"20", 20 * time.Second},
		{"2.5", 2500 * time.Millisecond},
	} {
		t.Setenv(TimescaleEnv, c.env)
		if got := Scale(time.Second); got != c.want {
			t.Errorf("%s=%q: Scale(1s) = %v, want %v", TimescaleEnv, c.env, got, c.want)
		}
	}
}

func TestScaleRejectsBadFactor(t *testing.T) {
	for _, v := range []string{"fast", "0", "0.5", "-3", "1e9", "NaN"} {
		t.Setenv(TimescaleEnv, v)
		if _, err := Timescale(); err == nil {
			t.Errorf("%s=%q accepted", TimescaleEnv, v)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s=%q: Scale did not panic", TimescaleEnv, v)
				}
			}()
			Scale(time.Second)
		}()
	}
}

// TestFailsOnPurposeInVM fails on purpose when JOBRUN_VM_FAIL_DEMO=1:
// `JOBRUN_VM_FAIL_DEMO=1 make test-vm` runs it inside the guest to show
// that a failure there makes the lane red. Anywhere else it passes.
func TestFailsOnPurposeInVM(t *testing.T) {
	if os.Getenv("JOBRUN_VM_FAIL_DEMO") != "1" {
		return
	}
	t.Fatal("failing on purpose (JOBRUN_VM_FAIL_DEMO=1): the lane must go red")
}
