package testenv

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// TimescaleEnv is the environment variable a slow lane sets to stretch
// what tests wait for: `make test-vm` runs its guest under qemu TCG, about
// 20 times slower than the host, and sets it to 20.
const TimescaleEnv = "JOBRUN_TEST_TIMESCALE"

// Scale returns d stretched by the factor in JOBRUN_TEST_TIMESCALE (a
// number ≥ 1; unset means 1). Tests use it for what waits on the machine's
// speed (a service's readiness, the leak checker's settle time, polls for
// a process to appear), never for what a test asserts about a duration.
// A malformed factor panics with the variable's name: it is the lane's
// setting, and a lane that runs with a wrong one must not pass.
func Scale(d time.Duration) time.Duration {
	f, err := Timescale()
	if err != nil {
		panic(err)
	}
	return time.Duration(float64(d) * f)
}

// Timescale returns the factor in JOBRUN_TEST_TIMESCALE, 1 when unset.
func Timescale() (float64, error) {
	v := os.Getenv(TimescaleEnv)
	if v == "" {
		return 1, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f >= 1 && f <= 1000) {
		return 0, fmt.Errorf("%s=%q: want a number from 1 to 1000", TimescaleEnv, v)
	}
	return f, nil
}
