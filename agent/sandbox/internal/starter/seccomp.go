package starter

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/runc/libcontainer/configs"
	lcseccomp "github.com/opencontainers/runc/libcontainer/seccomp"
)

// CompileSeccomp is the starter run with CompileSeccompEnv set, the child
// package sandbox reads a compiled seccomp filter out of: it reads a
// profile (configs.Seccomp as JSON) from stdin, loads it into its main
// thread with libcontainer's InitSeccomp (the very call a container's
// setup process makes), says "loaded" and waits for stdin to close while
// the parent reads the program out with ptrace. It never returns.
//
// It must run on the main thread (the one whose id is the pid the parent
// traces): call it from main, whose goroutine the program's init locked
// there.
func CompileSeccomp() {
	r := bufio.NewReader(os.Stdin)
	var cfg configs.Seccomp
	if err := json.NewDecoder(r).Decode(&cfg); err != nil {
		fmt.Fprintln(os.Stderr, "read profile:", err)
		os.Exit(1)
	}
	if _, err := lcseccomp.InitSeccomp(&cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Stdout.WriteString("loaded\n")
	_, _ = io.Copy(io.Discard, r)
	os.Exit(0)
}
