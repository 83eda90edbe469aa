package sandbox

import (
	"os"
	"runtime"
	"runtime/debug"

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
func init() {
	runtime.LockOSThread()
}

// Init is the container-side half of the runtime. libcontainer starts every
// container by re-executing the current binary as "<argv0> init"; Init
// turns such a process into the container's setup process and never
// returns. The same holds for the child the Runtime starts to compile a
// seccomp filter (see seccomp.go). In any other process it returns at
// once.
//
// Call it first thing in main, and in TestMain of every test binary that
// starts containers, before anything else runs (flag parsing, logging,
// goroutines): the process is single-threaded and inside the new
// namespaces at that point. A program that calls Init must not have a
// command named "init".
func Init() {
	if os.Getenv(seccompCompileEnv) != "" {
		compileSeccompChild()
	}
	if len(os.Args) < 2 || os.Args[1] != "init" {
		return
	}
	// The setup process lives for milliseconds before it execs the
	// container's program; collecting garbage in it is wasted time.
	debug.SetGCPercent(-1)
	libcontainer.Init()
}
