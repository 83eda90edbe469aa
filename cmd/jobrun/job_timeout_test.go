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

// TestJobTimeoutCoversServiceReadiness: a service that never listens
// holds the job only as long as the job's timeout (the service timeout is
// a minute), and the reason says what the job was waiting for. The
// control: the same job with a service that listens runs its step.
func TestJobTimeoutCoversServiceReadiness(t *testing.T) {
	file := project(t, `
job "deaf" {
  image   = "IMAGE"
  timeout = "2s"
  service "mute" {
    image   = "IMAGE"
    command = ["sleep", "600"]
    port    = 8080
  }
  step "x" { run = "echo MUST-NOT-RUN" }
}
job "hears" {
  image   = "IMAGE"
  timeout = "2m"
  service "web" {
    image   = "IMAGE"
    command = ["httpd", "-f", "-p", "8080", "-h", "/"]
    port    = 8080
  }
  step "x" { run = "echo step-ran" }
}
`, map[string]string{})
	h := newTestHost(t)
	r := h.local(t, file)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	order(t, r.out, `deaf +failed .*timed out after 2s while waiting for services`)
	order(t, r.out, `hears › x \| step-ran`, `hears +succeeded`)
	if strings.Contains(r.out, "| MUST-NOT-RUN") {
		t.Error("the job ran its step without its service")
	}
}
