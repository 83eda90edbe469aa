package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/jobrun/jobrun/internal/testenv"
)

// TestMain puts sandbox's helpers (the containers' launcher and starter) on
// PATH for the jobs run in process and by the built binary.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jobrun-launcher-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := testenv.InstallHelpers(dir); err != nil {
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
