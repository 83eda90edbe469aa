package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// speculation returns how a step of c is protected against speculative
// store bypass, which depends on the flags the filter was loaded with.
func speculation(t *testing.T, c *Container) string {
	t.Helper()
	exit, out, _ := sh(t, c, Process{}, "grep -E '^(Seccomp|Speculation_Store_Bypass):' /proc/self/status")
	if !exit.Success() {
		t.Fatal(exit)
	}
	return out
}

// stepFilters returns the seccomp filters of a running step of c (a
// `sleep` it starts), newest first, read with PTRACE_SECCOMP_GET_FILTER.
func stepFilters(t *testing.T, c *Container) [][]byte {
	t.Helper()
	done := make(chan *Exit, 1)
	go func() {
		exit, _ := c.Exec(context.Background(), Process{Args: []string{"sleep", "1000"}})
		done <- exit
	}()
	var pid int
	for deadline := time.Now().Add(10 * time.Second); pid == 0; time.Sleep(10 * time.Millisecond) {
		pids, err := c.cg.GetAllPids()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pids {
			if p != c.initPid {
				pid = p
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("step did not start")
		}
	}
	defer func() {
		c.Kill(0)
		<-done
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.PtraceSeize(pid); err != nil {
		t.Fatal(err)
	}
	defer unix.PtraceDetach(pid)
	if err := unix.PtraceInterrupt(pid); err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil || !ws.Stopped() {
		t.Fatalf("wait for ptrace stop: %v %#x", err, ws)
	}
	var filters [][]byte
	for i := 0; ; i++ {
		n, err := ptraceGetFilter(pid, i, nil)
		// ENOENT past the oldest filter; EINVAL if not in filter mode.
		if errors.Is(err, unix.ENOENT) || (i == 0 && errors.Is(err, unix.EINVAL)) {
			return filters
		}
		if err != nil {
			t.Fatal(err)
		}
		prog := make([]unix.SockFilter, n)
		if _, err := ptraceGetFilter(pid, i, prog); err != nil {
			t.Fatal(err)
		}
		filters = append(filters, unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), n*int(unsafe.Sizeof(prog[0]))))
	}
}

// TestSeccompFilterIsLibcontainers checks that the filter a step runs
// under, compiled once and loaded by the launcher, is byte for byte the
// one libcontainer compiles and loads in a container's setup process, for
// the native and the 32-bit-compatible profile; and that there is exactly
// one.
func TestSeccompFilterIsLibcontainers(t *testing.T) {
	rt, _ := newRuntime(t)
	inInit, _ := newRuntime(t)
	inInit.seccompInInit = true
	root := rootfs(t)
	for _, compat := range []bool{false, true} {
		t.Run(fmt.Sprintf("compat32=%v", compat), func(t *testing.T) {
			id := fmt.Sprintf("filter-%v", compat)
			oc := start(t, rt, Spec{ID: id, Rootfs: root, Compat32: compat})
			if oc.cfg.Seccomp != nil {
				t.Fatal("libcontainer got the seccomp profile: the filter was not compiled once")
			}
			ours := stepFilters(t, oc)
			if len(ours) != 1 {
				t.Fatalf("%d filters, want 1", len(ours))
			}
			// libcontainer orders the per-architecture sections of its
			// -ENOSYS stub by Go map iteration, so with the 32-bit
			// tables (two audit architectures) its own containers get
			// one of two orders; one of a few of them has ours.
			tries := 1
			if compat {
				tries = 20
			}
			for i := range tries {
				tc := start(t, inInit, Spec{ID: fmt.Sprintf("%s-lc-%d", id, i), Rootfs: root, Compat32: compat})
				if tc.cfg.Seccomp == nil {
					t.Fatal("libcontainer did not get the seccomp profile")
				}
				if i == 0 {
					// The load flags, SPEC_ALLOW here, show in how
					// the step is protected from speculation.
					if o, l := speculation(t, oc), speculation(t, tc); o != l {
						t.Errorf("compiled once: %q; libcontainer: %q", o, l)
					} else {
						t.Logf("both: %q", o)
					}
				}
				theirs := stepFilters(t, tc)
				if len(theirs) != 1 {
					t.Fatalf("libcontainer's container has %d filters, want 1", len(theirs))
				}
				if bytes.Equal(ours[0], theirs[0]) {
					break
				}
				if i == tries-1 {
					t.Errorf("filters differ: %d bytes compiled once, %d by libcontainer", len(ours[0]), len(theirs[0]))
				}
			}
			t.Logf("%d instructions", len(ours[0])/8)
		})
	}
	// A privileged container has no filter at all.
	if got := stepFilters(t, start(t, rt, Spec{ID: "filter-priv", Rootfs: root, Privileged: true})); len(got) != 0 {
		t.Errorf("privileged container: %d filters", len(got))
	}
}

// TestFilterFlags: the launcher loads the filter with the flags
// libcontainer would, SPEC_ALLOW for the default profile (specconv's
// default; strace shows a libcontainer init calling seccomp(2) with it).
func TestFilterFlags(t *testing.T) {
	s := Spec{ID: "flags", Rootfs: "/"}
	if err := s.validate(); err != nil {
		t.Fatal(err)
	}
	spec, err := ociSpec(&s, "/", t.TempDir(), "/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := libcontainerConfig(&s, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := filterFlags(cfg.Seccomp); err != nil || got != unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW {
		t.Errorf("flags %#x %v, want SPEC_ALLOW", got, err)
	}
	cfg.Seccomp.Flags = append(cfg.Seccomp.Flags, "SECCOMP_FILTER_FLAG_SOMETHING_NEW")
	if _, err := filterFlags(cfg.Seccomp); err == nil {
		t.Error("unknown flag accepted")
	}
}
