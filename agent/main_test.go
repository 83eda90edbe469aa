package agent

import (
	"fmt"
	"os"
	"testing"

	"github.com/jobrun/jobrun/internal/testenv"
)

// TestMain installs the sandbox's helper binaries for the tests that run
// real jobs (userns_test.go).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agent-helpers")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		if err := testenv.InstallHelpers(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}
