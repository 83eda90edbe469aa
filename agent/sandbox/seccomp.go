package sandbox

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"github.com/jobrun/jobrun/agent/sandbox/internal/starter"
	"github.com/jobrun/jobrun/agent/sandbox/internal/wire"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Compiling Docker's seccomp profile with libseccomp takes milliseconds
// (tens with the 32-bit tables), and libcontainer does it in the setup
// process of every container. The program does not change from one
// container to the next, so the Runtime has libcontainer compile it once
// per profile (in the background, see filterCache), in a throwaway
// jobrun-starter, reads the loaded
// program back out of that child with PTRACE_SECCOMP_GET_FILTER, and has
// each container's launcher load those very bytes before it starts any
// step. The filter is libcontainer's own output (libseccomp's program
// with libcontainer's -ENOSYS stub in front), not a re-implementation;
// TestSeccompFilterIsLibcontainers compares the two in running
// containers. If compiling this way fails (a kernel without
// CONFIG_CHECKPOINT_RESTORE, say), libcontainer compiles the filter per
// container as before.

// filterCache holds the compiled filters by profile. Compiling takes a
// run of the starter (several ms), more than it saves one container,
// so it never holds up a start: a profile is compiled in the background
// on first sight (New starts on the default one), and containers started
// meanwhile have libcontainer compile their filter, as without the cache.
// Compiled filters are also kept on disk (filterStore), where the next
// process finds them at first sight.
type filterCache struct {
	starter string       // the binary that compiles
	store   *filterStore // compiled filters kept on disk; nil for none
	log     hclog.Logger
	mu      sync.Mutex
	entries map[string]*filterEntry
}

type filterEntry struct {
	done   chan struct{} // closed when compiled or failed
	filter *wire.Filter
	err    error
}

func newFilterCache(starter string, log hclog.Logger) *filterCache {
	return &filterCache{starter: starter, log: log, entries: map[string]*filterEntry{}}
}

// filter returns the compiled program of cfg and the flags libcontainer
// would load it with, or nil if it is not compiled (yet). wait waits for
// a compile under way (tests use it).
func (fc *filterCache) filter(cfg *configs.Seccomp, wait bool) *wire.Filter {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil
	}
	key := string(b)
	fc.mu.Lock()
	e, ok := fc.entries[key]
	if !ok {
		e = &filterEntry{done: make(chan struct{})}
		fc.entries[key] = e
		if f := fc.store.loadFor(b); f != nil {
			e.filter = f
			close(e.done)
		} else {
			go fc.compile(e, cfg, b)
		}
	}
	fc.mu.Unlock()
	if wait {
		<-e.done
	}
	select {
	case <-e.done:
		return e.filter
	default:
		return nil
	}
}

// compile fills in e.
func (fc *filterCache) compile(e *filterEntry, cfg *configs.Seccomp, cfgJSON []byte) {
	defer close(e.done)
	flags, err := filterFlags(cfg)
	var prog []byte
	if err == nil {
		prog, err = compileFilter(fc.starter, cfgJSON)
	}
	if err != nil {
		fc.log.Warn("cannot compile the seccomp filter once for all containers; each container's setup compiles it (slower start)", "error", err)
		e.err = err
		return
	}
	e.filter = &wire.Filter{Flags: flags, Program: prog}
	if fc.store != nil {
		if err := fc.store.save(cfgJSON, e.filter); err != nil {
			fc.log.Debug("cannot keep the compiled seccomp filter", "error", err)
		}
	}
}

// defaultSeccomp returns the seccomp profile of a container with the
// default Spec and the given Compat32: with it on, the one every job has
// (the agent sets it, as Docker does).
func defaultSeccomp(launcher string, compat32 bool) (*configs.Seccomp, error) {
	return profileOf(launcher, Spec{ID: "default", Rootfs: "/", Compat32: compat32})
}

// builderSeccompConfig returns the seccomp profile of a building
// container (Spec.Builder, which needs a user namespace) with the 32-bit
// tables, as the agent starts them. A profile does not depend on which
// user namespace: the path only passes Spec's check, and the namespace
// is left out of the conversion (libcontainer would read its mappings).
func builderSeccompConfig(launcher string) (*configs.Seccomp, error) {
	return profileOf(launcher, Spec{ID: "default", Rootfs: "/", Compat32: true, Builder: true, UserNS: "/proc/self/ns/user"})
}

// profileOf returns the seccomp profile of a container with Spec s.
func profileOf(launcher string, s Spec) (*configs.Seccomp, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	spec, err := ociSpec(&s, "/", "/", launcher)
	if err != nil {
		return nil, err
	}
	spec.Linux.Namespaces = slices.DeleteFunc(spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace })
	cfg, err := libcontainerConfig(&s, spec)
	if err != nil {
		return nil, err
	}
	return cfg.Seccomp, nil
}

// filterFlags returns the seccomp(2) flags libcontainer loads cfg's filter
// with: those the profile names (specconv adds SPEC_ALLOW when it names
// none, as runc does). libcontainer maps each to a libseccomp attribute
// and back; a flag or action this does not know is an error, and leaves
// the compiling to libcontainer.
func filterFlags(cfg *configs.Seccomp) (uint32, error) {
	var flags uint32
	for _, f := range cfg.Flags {
		switch f {
		case "SECCOMP_FILTER_FLAG_TSYNC":
			// libcontainer ignores it; the launcher always syncs.
		case specs.LinuxSeccompFlagLog:
			flags |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		case specs.LinuxSeccompFlagWaitKillableRecv:
			flags |= unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
		default:
			return 0, fmt.Errorf("seccomp flag %s", f)
		}
	}
	for _, c := range cfg.Syscalls {
		if c.Action == configs.Notify {
			return 0, errors.New("seccomp notify action (needs a listener)")
		}
	}
	return flags, nil
}

// compileFilter has libcontainer compile and load the profile cfgJSON in
// a child process, the starter binary at path, and returns the loaded
// program.
func compileFilter(path string, cfgJSON []byte) ([]byte, error) {
	// ptrace requests must all come from the thread that attached.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	cmd := exec.Command(path)
	cmd.Env = []string{starter.CompileSeccompEnv + "=1"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("compile seccomp filter: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("compile seccomp filter: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("compile seccomp filter: %w", err)
	}
	defer func() {
		stdin.Close()
		done := make(chan struct{})
		go func() {
			cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	fail := func(err error) ([]byte, error) {
		if s := strings.TrimSpace(stderr.String()); s != "" {
			err = fmt.Errorf("%w (%s)", err, s)
		}
		return nil, fmt.Errorf("compile seccomp filter: %w", err)
	}
	if _, err := stdin.Write(append(cfgJSON, '\n')); err != nil {
		return fail(err)
	}
	if f, ok := stdout.(*os.File); ok {
		f.SetReadDeadline(time.Now().Add(30 * time.Second))
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "loaded\n" {
		return fail(fmt.Errorf("child said %q: %v", line, err))
	}
	// The child's main thread (its pid) loaded the filter and now waits
	// for stdin to close.
	pid := cmd.Process.Pid
	if err := unix.PtraceSeize(pid); err != nil {
		return fail(fmt.Errorf("ptrace seize: %w", err))
	}
	defer unix.PtraceDetach(pid)
	if err := unix.PtraceInterrupt(pid); err != nil {
		return fail(fmt.Errorf("ptrace interrupt: %w", err))
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil || !ws.Stopped() {
		return fail(fmt.Errorf("wait for ptrace stop: %v (status %#x)", err, ws))
	}
	// Index 0 is the newest filter, and the child has only the one.
	n, err := ptraceGetFilter(pid, 0, nil)
	if err != nil {
		return fail(fmt.Errorf("ptrace get filter: %w", err))
	}
	if _, err := ptraceGetFilter(pid, 1, nil); !errors.Is(err, unix.ENOENT) {
		return fail(fmt.Errorf("child has more than one seccomp filter (%v)", err))
	}
	prog := make([]unix.SockFilter, n)
	if _, err := ptraceGetFilter(pid, 0, prog); err != nil {
		return fail(fmt.Errorf("ptrace get filter: %w", err))
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), len(prog)*int(unsafe.Sizeof(prog[0]))), nil
}

// ptraceGetFilter copies the index'th seccomp filter of the stopped tracee
// pid into buf (nil: just count) and returns its number of instructions.
func ptraceGetFilter(pid, index int, buf []unix.SockFilter) (int, error) {
	var p unsafe.Pointer
	if len(buf) > 0 {
		p = unsafe.Pointer(&buf[0])
	}
	n, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(pid), uintptr(index), uintptr(p), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	if n == 0 {
		return 0, errors.New("empty filter")
	}
	return int(n), nil
}
