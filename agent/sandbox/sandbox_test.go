package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestExitCodes(t *testing.T) {
	rt, _ := newRuntime(t)
	c := start(t, rt, Spec{ID: "exit-codes", Rootfs: rootfs(t)})
	for _, tc := range []struct {
		script string
		code   int
		signal syscall.Signal
		want   string
	}{
		{"true", 0, 0, "exit code 0"},
		{"exit 7", 7, 0, "exit code 7"},
		{"kill -9 $$", -1, syscall.SIGKILL, "killed by signal 9 (killed)"},
		{"kill -TERM $$", -1, syscall.SIGTERM, "killed by signal 15 (terminated)"},
	} {
		exit, _, _ := sh(t, c, Process{}, tc.script)
		if exit.Code != tc.code || exit.Signal != tc.signal || exit.String() != tc.want {
			t.Errorf("%q: got code %d signal %d %q, want %d %d %q", tc.script, exit.Code, exit.Signal, exit, tc.code, tc.signal, tc.want)
		}
		if exit.TimedOut || exit.Cancelled || exit.OOMKilled || exit.PidsLimit {
			t.Errorf("%q: unexpected cause in %+v", tc.script, exit)
		}
	}
	// A missing command fails to start inside the container: that is an
	// exit, not a broken runtime.
	if _, err := c.Exec(context.Background(), Process{Args: []string{"/no/such/command"}}); err == nil {
		t.Error("exec of a missing command: no error")
	}
}

func TestEnvUserWorkdir(t *testing.T) {
	rt, _ := newRuntime(t)
	ws := t.TempDir()
	cache := t.TempDir()
	write(t, filepath.Join(ws, "checked-out"), "x")
	c := start(t, rt, Spec{
		ID:        "env-user",
		Rootfs:    rootfs(t),
		Workspace: ws,
		Mounts:    []Mount{{Source: cache, Target: "/cache", Chown: true}},
		Env:       []string{"FROM_IMAGE=image", "OVERRIDDEN=image"},
		User:      "builder",
	})
	exit, out, errOut := sh(t, c, Process{Env: []string{"OVERRIDDEN=job"}},
		`echo "$(id -u):$(id -g):$(id -G)"; pwd; echo "$FROM_IMAGE $OVERRIDDEN $HOME $HOSTNAME"; hostname; echo hi >/workspace/out; echo c >/cache/c; echo ok >>/workspace/checked-out; grep CapEff /proc/self/status`)
	if !exit.Success() {
		t.Fatalf("step failed: %s\n%s%s", exit, out, errOut)
	}
	want := "1000:1000:1000 1001\n/workspace\nimage job /home/builder env-user\nenv-user\nCapEff:\t0000000000000000\n"
	if out != want {
		t.Errorf("output:\n%q\nwant\n%q", out, want)
	}
	for _, p := range []string{filepath.Join(ws, "out"), filepath.Join(cache, "c"), filepath.Join(ws, "checked-out")} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if s := st.Sys().(*syscall.Stat_t); s.Uid != 1000 || s.Gid != 1000 {
			t.Errorf("%s owned by %d:%d, want 1000:1000", p, s.Uid, s.Gid)
		}
	}

	// The step's user and working directory override the container's;
	// root gets Docker's capabilities minus NET_RAW.
	exit, out, _ = sh(t, c, Process{User: "0:0", Cwd: "/tmp"}, `id -u; pwd; grep CapEff /proc/self/status`)
	if want := "0\n/tmp\nCapEff:\t00000000a80405fb\n"; !exit.Success() || out != want {
		t.Errorf("as root: %s, output %q, want %q", exit, out, want)
	}
	// no_new_privs is on.
	exit, out, _ = sh(t, c, Process{}, `grep NoNewPrivs /proc/self/status`)
	if !exit.Success() || out != "NoNewPrivs:\t1\n" {
		t.Errorf("no_new_privs: %s %q", exit, out)
	}
	if _, err := c.Exec(context.Background(), Process{Args: []string{"true"}, User: "nobody-here"}); err == nil {
		t.Error("unknown user: no error")
	}
}

// TestStreaming checks that output reaches the writer while the step still
// runs (the step waits for the test to see its first line), in order.
func TestStreaming(t *testing.T) {
	rt, _ := newRuntime(t)
	ws := t.TempDir()
	c := start(t, rt, Spec{ID: "streaming", Rootfs: rootfs(t), Workspace: ws})
	script := `echo first; while [ ! -e /workspace/go ]; do sleep 0.05; done; echo second >&2; echo third; echo fourth >&2`

	t.Run("combined", func(t *testing.T) {
		os.Remove(filepath.Join(ws, "go"))
		w := &signalWriter{want: "first", seen: make(chan struct{})}
		go func() {
			<-w.seen
			write(t, filepath.Join(ws, "go"), "")
		}()
		exit, err := c.Exec(context.Background(), Process{Args: []string{"/bin/sh", "-c", script}, Stdout: w, Stderr: w, Timeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if got := w.buf.String(); !exit.Success() || got != "first\nsecond\nthird\nfourth\n" {
			t.Errorf("step %s, output %q", exit, got)
		}
	})
	t.Run("separate", func(t *testing.T) {
		os.Remove(filepath.Join(ws, "go"))
		w := &signalWriter{want: "first", seen: make(chan struct{})}
		var errOut syncBuffer
		go func() {
			<-w.seen
			write(t, filepath.Join(ws, "go"), "")
		}()
		exit, err := c.Exec(context.Background(), Process{Args: []string{"/bin/sh", "-c", script}, Stdout: w, Stderr: &errOut, Timeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if got := w.buf.String(); !exit.Success() || got != "first\nthird\n" {
			t.Errorf("step %s, stdout %q", exit, got)
		}
		if got := errOut.String(); got != "second\nfourth\n" {
			t.Errorf("stderr %q", got)
		}
	})
}

// signalWriter records output and closes seen once want has arrived.
type signalWriter struct {
	buf  syncBuffer
	want string
	seen chan struct{}
	once sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func TestBash(t *testing.T) {
	rt, _ := newRuntime(t)
	root := rootfs(t)
	c := start(t, rt, Spec{ID: "no-bash", Rootfs: root})
	if got := c.Shell("x"); !slices.Equal(got, []string{"/bin/sh", "-c", "x"}) {
		t.Errorf("without bash: %q", got)
	}
	// busybox sh stands in for bash: what matters is the choice.
	if err := os.Symlink("busybox", filepath.Join(root, "bin/bash")); err != nil {
		t.Fatal(err)
	}
	c2 := start(t, rt, Spec{ID: "with-bash", Rootfs: root})
	if got := c2.Shell("x"); !slices.Equal(got, []string{"/bin/bash", "-eo", "pipefail", "-c", "x"}) {
		t.Errorf("with bash: %q", got)
	}
}

// TestParallelJobs runs several containers at once, as an agent with a
// parallel limit does.
func TestParallelJobs(t *testing.T) {
	rt, _ := newRuntime(t)
	root := rootfs(t)
	errs := make(chan error, 6)
	for i := range 6 {
		go func() {
			c, err := rt.Start(context.Background(), Spec{ID: fmt.Sprintf("parallel-%d", i), Rootfs: root})
			if err != nil {
				errs <- err
				return
			}
			var out syncBuffer
			exit, err := c.Exec(context.Background(), Process{Args: []string{"hostname"}, Stdout: &out})
			if err == nil && (!exit.Success() || out.String() != fmt.Sprintf("parallel-%d\n", i)) {
				err = fmt.Errorf("parallel-%d: %s, output %q", i, exit, out.String())
			}
			if derr := c.Destroy(); err == nil {
				err = derr
			}
			errs <- err
		}()
	}
	for range 6 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
