package lockfile

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestExclusiveInProcess(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a", "lock")
	if Held(p) {
		t.Fatal("fresh lock reported held")
	}
	l, err := TryAcquire(p)
	if err != nil {
		t.Fatal(err)
	}
	if !Held(p) {
		t.Fatal("held lock reported free")
	}
	if _, err := TryAcquire(p); !errors.Is(err, ErrLocked) {
		t.Fatalf("second TryAcquire: %v, want ErrLocked", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Acquire(ctx, p); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire on held lock: %v, want deadline", err)
	}
	go func() { time.Sleep(20 * time.Millisecond); l.Release() }()
	l2, err := Acquire(context.Background(), p)
	if err != nil {
		t.Fatalf("Acquire after release: %v", err)
	}
	l2.Release()
}

// TestHeldByOtherProcess checks that a lock taken by another process counts,
// and that the kernel frees it when that process dies.
func TestHeldByOtherProcess(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	cmd := exec.Command("flock", p, "sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Skipf("needs flock(1) from util-linux: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !Held(p) {
		if time.Now().After(deadline) {
			t.Fatal("lock taken by flock(1) never seen as held")
		}
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // flock and its sleep, which shares the fd
	cmd.Wait()
	// The sleep is reaped by init, not us: give the kernel a moment.
	for deadline = time.Now().Add(5 * time.Second); Held(p); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("lock still held after its holder was killed")
		}
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
}

func TestShared(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	a, err := TryAcquireShared(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := TryAcquireShared(p)
	if err != nil {
		t.Fatalf("second shared holder refused: %v", err)
	}
	if _, err := TryAcquire(p); !errors.Is(err, ErrLocked) {
		t.Fatalf("exclusive beside shared: %v, want ErrLocked", err)
	}
	a.Release()
	b.Release()
	x, err := TryAcquire(p)
	if err != nil {
		t.Fatalf("exclusive after shared released: %v", err)
	}
	if _, err := TryAcquireShared(p); !errors.Is(err, ErrLocked) {
		t.Fatalf("shared beside exclusive: %v, want ErrLocked", err)
	}
	x.Release()
}

// TestLockAfterUnlink: a lock file that a holder unlinked is not a lock any
// more; taking the lock again locks the new file at the path.
func TestLockAfterUnlink(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	stale, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	os.Remove(p) // the holder removed the entry and its lock file
	if same(stale, p) {
		t.Fatal("an unlinked file counts as the file at its old path")
	}
	l, err := TryAcquire(p)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if !same(l.f, p) {
		t.Error("the lock is not on the file at the path")
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if Held(missing) {
		t.Error("a missing lock file counts as held")
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Error("Held created a lock file")
	}
}

func TestSweep(t *testing.T) {
	base := t.TempDir()
	for _, n := range []string{"live", "dead"} {
		if err := os.Mkdir(filepath.Join(base, n), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	live, err := TryAcquire(filepath.Join(base, "live.lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Release()
	var removed []string
	err = Sweep(context.Background(), base, func(dir string, l *Lock) error {
		removed = append(removed, filepath.Base(dir))
		return l.Release()
	})
	if err != nil || len(removed) != 1 || removed[0] != "dead" {
		t.Fatalf("Sweep removed %v (%v); want only the entry no one holds", removed, err)
	}
	if err := Sweep(context.Background(), filepath.Join(base, "missing"), nil); err != nil {
		t.Fatalf("Sweep of a missing dir: %v", err)
	}
}
