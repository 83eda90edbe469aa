package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/internal/testenv"
)

// TestMain lets libcontainer re-execute the test binary as a container's
// init, as it does the jobrun binary, and puts the containers' launcher on
// PATH for the jobs run in process and by the built binary.
func TestMain(m *testing.M) {
	sandbox.Init()
	dir, err := os.MkdirTemp("", "jobrun-launcher-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := testenv.InstallLauncher(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if buildOnce.dir != "" {
		os.RemoveAll(buildOnce.dir)
	}
	os.Exit(code)
}
