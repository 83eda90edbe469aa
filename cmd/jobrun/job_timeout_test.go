package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncOut collects a running jobrun's output and says when a text shows.
type syncOut struct {
	mu   sync.Mutex
	b    bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (s *syncOut) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.b.Write(p)
	if strings.Contains(s.b.String(), s.want) {
		s.once.Do(func() { close(s.seen) })
	}
	return n, err
}

func (s *syncOut) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const lockedCacheJobs = `
job "holder" {
  image = "IMAGE"
  cache "c" {
    path    = "/c"
    sharing = "locked"
  }
  step "hold" { run = "echo HOLDING; sleep 600" }
}
job "waiter" {
  image   = "IMAGE"
  timeout = "2s"
  cache "c" {
    path    = "/c"
    sharing = "locked"
  }
  step "use" { run = "echo GOT-THE-CACHE" }
}
`

// TestJobTimeoutCoversLockedCacheWait: a job's timeout bounds the whole
// job, not only its steps: a job waiting for a locked cache another job
// holds times out, with a reason saying what it was waiting for. The
// control: once the holder is gone, the same job gets the cache and runs.
func TestJobTimeoutCoversLockedCacheWait(t *testing.T) {
	file := project(t, lockedCacheJobs, map[string]string{})
	h := newTestHost(t)

	hctx, stopHolder := context.WithCancel(context.Background())
	hout := &syncOut{want: "HOLDING", seen: make(chan struct{})}
	held := make(chan int, 1)
	go func() {
		held <- run(hctx, []string{"--state-dir", h.state, "local", "--artifacts", h.artifacts, file, "--job", "holder"}, hout, hout)
	}()
	defer func() {
		stopHolder()
		<-held
	}()
	select {
	case <-hout.seen:
	case code := <-held:
		t.Fatalf("the holder ended (exit %d) before holding the cache:\n%s", code, hout)
	}

	// A guard against the old hang, not a measurement: without the fix
	// the waiter would wait for the lock until this cancels it.
	wctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	code := run(wctx, []string{"--state-dir", h.state, "local", "--artifacts", h.artifacts, file, "--job", "waiter"}, &out, &out)
	t.Logf("waiter: exit %d\n%s", code, out.String())
	if code != 1 {
		t.Fatalf("waiter exit %d, want 1 (timed out)", code)
	}
	order(t, out.String(), `cache "c" is locked by another job; waiting`,
		`waiter +failed .*timed out after 2s while acquiring caches`)
	if strings.Contains(out.String(), "GOT-THE-CACHE") {
		t.Error("the waiter ran its step while the cache was held")
	}

	// The control: the holder gone, the lock is free and the same job runs.
	stopHolder()
	<-held
	held <- 0
	r := h.local(t, file, "--job", "waiter")
	if r.code != 0 {
		t.Fatalf("waiter after the holder ended: exit %d", r.code)
	}
	order(t, r.out, `waiter › use \| GOT-THE-CACHE`, `waiter +succeeded`)
}
