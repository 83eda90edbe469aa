package main

import (
	"os"
	"testing"

	"github.com/jobrun/jobrun/agent/sandbox"
)

// TestMain lets libcontainer re-execute the test binary as a container's
// init, as it does the jobrun binary.
func TestMain(m *testing.M) {
	sandbox.Init()
	code := m.Run()
	if buildOnce.dir != "" {
		os.RemoveAll(buildOnce.dir)
	}
	os.Exit(code)
}
