// Command jobrun-starter starts jobrun's job containers through
// libcontainer on behalf of package sandbox, which runs it next to the
// agent (see package sandbox/internal/starter for why and how). It is
// built with cgo and the seccomp tag, and installed next to jobrun.
//
// libcontainer re-executes it as "jobrun-starter init" to set each
// container up, and package sandbox runs it to compile seccomp filters.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/jobrun/jobrun/agent/sandbox/internal/starter"
	"github.com/opencontainers/runc/libcontainer"
	// The cgo constructor that sets up namespaces (nsexec) before the Go
	// runtime starts in the re-executed "init" process.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// init keeps the main goroutine on the main thread for good (locking in an
// init function does that, see runtime.LockOSThread). libcontainer joins a
// locked goroutine's thread to a container's mount namespace to open mount
// sources and lets the thread die with the goroutine; but the main thread
// cannot die, and Go parks it instead, so if that goroutine had landed on
// the main thread the whole process would report, and pin, the container's
// mount namespace from then on. With the main thread taken, it cannot.
// It also keeps CompileSeccomp on the main thread, as it needs.
func init() {
	runtime.LockOSThread()
}

func main() {
	if os.Getenv(starter.CompileSeccompEnv) != "" {
		starter.CompileSeccomp()
	}
	if len(os.Args) > 1 && os.Args[1] == "init" {
		// (Re-executed by libcontainer from the sealed copy Seal
		// made, or from its own per-container one.)
		// The setup process lives for milliseconds before it execs
		// the container's program; collecting garbage in it is
		// wasted time.
		debug.SetGCPercent(-1)
		libcontainer.Init()
	}
	if err := starter.Seal(); err != nil {
		// Not fatal: libcontainer then seals a copy of this binary
		// for every container instead, which is slower.
		fmt.Fprintln(os.Stderr, "jobrun-starter: run from a sealed copy:", err)
	}
	if err := starter.Serve(starter.ControlFD); err != nil {
		fmt.Fprintln(os.Stderr, "jobrun-starter:", err)
		os.Exit(1)
	}
}
