package testenv

import (
	"os/exec"

	"github.com/jobrun/jobrun/internal/pdeath"
)

// StartChild starts cmd so that it dies with the test binary, even when
// the binary ends without running its clean-ups (a -timeout panic, a
// fatal signal): the child gets SIGKILL when its parent ends, and not
// when a thread of it does (pdeath.Start). Wait for cmd through the
// returned func, never cmd.Wait.
func StartChild(cmd *exec.Cmd) (wait func() error, err error) {
	return pdeath.Start(cmd)
}
