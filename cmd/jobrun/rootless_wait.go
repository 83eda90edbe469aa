package main

import (
	"fmt"
	"os"
	"os/exec"
)

// The child of an unprivileged jobrun (rootlessReexec) waits for its maps
// as /bin/sh, not as a second start of jobrun: a Go program of this size
// takes some 10 ms (more under load) to start, a shell about one, and the
// start is on the way to every job (issue #18's bench). The script reads
// the line the parent writes on its fd 3 once both maps are written,
// closes it, and executes jobrun (stage "run", from the environment);
// without the line (the parent failed and said why) it ends.

// rootlessMapped is the line the parent writes once the maps are in.
const rootlessMapped = "mapped\n"

// rootlessWaitScript is the child's shell; $1 is jobrun, the rest its
// arguments.
const rootlessWaitScript = `IFS= read -r ok <&3
if [ "$ok" != mapped ]; then
	echo "jobrun: the user namespace was not set up; see the message above" >&2
	exit 1
fi
exec 3<&-
exec "$@"`

// rootlessWaiter is the child's command, to start in the new namespaces
// with the pipe's read end as its fd 3: the shell, then this jobrun
// again with this process's arguments.
func rootlessWaiter() (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("running jobs without root: which jobrun runs: %w", err)
	}
	return exec.Command("/bin/sh", append([]string{"-c", rootlessWaitScript, "jobrun", exe}, os.Args[1:]...)...), nil
}
