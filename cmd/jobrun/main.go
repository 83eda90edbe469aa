// Command jobrun is the CI job executor: `jobrun local` runs a workflow on
// this machine, `jobrun validate` checks a job file, `jobrun image` manages
// the image store.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and maps errors to exit codes: 0 success, 1
// a job failed or input was invalid, 2 a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "jobrun:", ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "jobrun:", err)
	if isUsageError(err) {
		return 2
	}
	return 1
}
