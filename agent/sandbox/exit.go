package sandbox

import (
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/jobrun/jobrun/internal/units"
)

// Exit is how a step ended. Several causes can hold at once (a fork bomb
// hits the pids limit and then times out); String names them all, the
// deciding one first.
type Exit struct {
	// Code is the exit code, or -1 if a signal ended the process.
	Code int
	// Signal is the signal that ended the process, if any.
	Signal syscall.Signal
	// OOMKilled: the kernel's OOM killer killed a process of the
	// container while the step ran, and the step failed.
	OOMKilled bool
	// MemoryLimit is the memory limit in force, for the message.
	MemoryLimit int64
	// PidsLimit: a fork failed on the pids limit while the step ran, and
	// the step failed.
	PidsLimit bool
	// PidsMax is the pids limit in force, for the message.
	PidsMax int64
	// TimedOut: the step's context reached its deadline and the
	// container's processes were stopped.
	TimedOut bool
	// Timeout is the limit that was reached, if known (see Timeout).
	Timeout time.Duration
	// Cancelled: the step's context was cancelled and the container's
	// processes were stopped.
	Cancelled bool
	// Duration is how long the step ran.
	Duration time.Duration
}

// Success reports whether the step exited 0 and nothing stopped it.
func (e *Exit) Success() bool {
	return e.Code == 0 && e.Signal == 0 && !e.TimedOut && !e.Cancelled
}

// String gives the cause of death in words: "exit code 7", "killed by
// signal 9 (killed)", "out of memory (limit 2 GiB)", "timed out after 20m",
// "cancelled", "pids limit reached (limit 64)".
func (e *Exit) String() string {
	var causes []string
	switch {
	case e.Cancelled:
		causes = append(causes, "cancelled")
	case e.TimedOut && e.Timeout > 0:
		causes = append(causes, "timed out after "+units.FormatDuration(e.Timeout))
	case e.TimedOut:
		causes = append(causes, "timed out")
	}
	if e.OOMKilled {
		if e.MemoryLimit > 0 {
			causes = append(causes, fmt.Sprintf("out of memory (limit %s)", units.FormatSize(e.MemoryLimit)))
		} else {
			causes = append(causes, "out of memory")
		}
	}
	if e.PidsLimit {
		causes = append(causes, fmt.Sprintf("pids limit reached (limit %d)", e.PidsMax))
	}
	if len(causes) == 0 {
		if e.Signal != 0 {
			return fmt.Sprintf("killed by signal %d (%s)", int(e.Signal), e.Signal)
		}
		return fmt.Sprintf("exit code %d", e.Code)
	}
	return strings.Join(causes, "; ")
}

// Timeout is a context cause that names the limit a step ran into, so the
// exit report can say "timed out after 20m":
//
//	ctx, cancel := context.WithTimeoutCause(ctx, d, sandbox.Timeout(d))
//
// A deadline without this cause is still reported as a timeout, without
// the duration.
type Timeout time.Duration

func (t Timeout) Error() string {
	return "timed out after " + units.FormatDuration(time.Duration(t))
}
