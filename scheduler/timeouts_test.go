package scheduler

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
)

// shortTimeouts make the server drop a stalled client in a test's time.
// Progress is longer than Read and Write, so that the paced upload of
// TestSlowBodyIsDropped is not cut on a busy machine (a 64 KiB step of it
// once took over 300 ms in CI), while a trickle of a byte every 20 ms
// still never makes a step's progress.
var shortTimeouts = Timeouts{ReadHeader: time.Second, Read: 300 * time.Millisecond, Write: 300 * time.Millisecond,
	Idle: time.Second, Progress: 2 * time.Second}

// serveTimed starts a Server over st behind the http.Server it configures
// (HTTPServer, as `jobrun server` runs it), with short timeouts.
func serveTimed(t *testing.T, st Store) string {
	t.Helper()
	_, srv := startServer(t, st, func(c *Config) { c.Timeouts = shortTimeouts; c.PublicRead = true }, true)
	hs := httptest.NewUnstartedServer(nil)
	hs.Config = srv.HTTPServer()
	hs.Start()
	t.Cleanup(hs.Close)
	return hs.URL
}

// trickle sends a request with head's headers and a body of n bytes, one
// byte every 20 ms, and returns how many bytes went before the server
// answered or closed the connection.
func trickle(t *testing.T, base, head string, n int) int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "%s\r\nHost: x\r\nContent-Length: %d\r\n\r\n", head, n); err != nil {
		t.Fatal(err)
	}
	answered := make(chan struct{})
	go func() {
		io.Copy(io.Discard, conn) // a reply or the close
		close(answered)
	}()
	for i := 0; i < n; i++ {
		select {
		case <-answered:
			return i
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := conn.Write([]byte{'{'}); err != nil {
			return i
		}
	}
	return n
}

// TestSlowBodyIsDropped: a client trickling a request body is dropped
// before it is through, on an ordinary route (the server's ReadTimeout)
// and on an upload (its own progress deadline); it used to be held for as
// long as it trickled. The positive controls: the same requests at
// network speed go through, an upload far longer than the ReadTimeout
// among them.
func TestSlowBodyIsDropped(t *testing.T) {
	base := serveTimed(t, sqliteStore(t))
	ag, at := leased(t, base)
	const n = 500 // 10 s at a byte every 20 ms
	if sent := trickle(t, base, "POST /api/v1/runs HTTP/1.1\r\nAuthorization: Bearer "+adminToken, n); sent == n {
		t.Fatal("a trickled run request was held until its body was through")
	}
	put := fmt.Sprintf("PUT /api/v1/jobs/%d/attempts/%d/artifacts/slow.bin HTTP/1.1\r\nAuthorization: Bearer %s", at.Job, at.Attempt, ag.Token)
	if sent := trickle(t, base, put, n); sent == n {
		t.Fatal("a trickled artifact upload was held until its body was through")
	}
	chunk := fmt.Sprintf("PUT /api/v1/jobs/%d/attempts/%d/log?offset=0 HTTP/1.1\r\nAuthorization: Bearer %s", at.Job, at.Attempt, ag.Token)
	if sent := trickle(t, base, chunk, n); sent == n {
		t.Fatal("a trickled log chunk was held until its body was through")
	}

	ctx := context.Background()
	if _, err := admin(base).CreateRun(ctx, api.NewRun{Repo: "org/app", Branch: "b", Source: twoJobs}); err != nil {
		t.Fatalf("a run request at network speed: %v", err)
	}
	// 64 MiB through a reader that yields every 4 MiB: longer in all than
	// the ReadTimeout, never stalled for a progress deadline.
	big := &paced{left: 64 << 20}
	if err := ag.PutArtifact(ctx, at, "big.bin", big, 64<<20); err != nil {
		t.Fatalf("a 64 MiB upload: %v", err)
	}
}

// paced is left bytes of zeros, read in 4 MiB steps with a pause after
// each, so the whole takes longer than shortTimeouts.Read.
type paced struct{ left, step int }

func (p *paced) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	if p.step >= 4<<20 {
		time.Sleep(50 * time.Millisecond)
		p.step = 0
	}
	n := min(len(b), p.left, 4<<20-p.step)
	clear(b[:n])
	p.left, p.step = p.left-n, p.step+n
	return n, nil
}

// TestLongStreamOutlivesTimeouts: a live log, a followed text log and a
// lease long-poll last longer than the server's read and write timeouts:
// they have their own deadlines.
func TestLongStreamOutlivesTimeouts(t *testing.T) {
	base := serveTimed(t, sqliteStore(t))
	ctx := context.Background()
	ag, at := leased(t, base)
	off := appendAll(t, ag, at, 0, logLines(t, api.LogLine{Kind: "out", Text: "first"}))

	events := sse(t, fmt.Sprintf("%s/jobs/%d/events?attempt=1", base, at.Job))
	follow, err := admin(base).Log(ctx, at.Job, true)
	if err != nil {
		t.Fatal(err)
	}
	defer follow.Close()
	lines := bufio.NewReader(follow)
	if l, err := lines.ReadString('\n'); err != nil || !strings.HasSuffix(l, " first\n") {
		t.Fatalf("followed log: %q %v", l, err)
	}
	_, reg := register(t, base, "idle", 1)
	idle := &api.Client{Base: base, Token: reg.Token}
	l, err := idle.Lease(ctx, reg.ID, time.Second) // nothing to lease: waits it out
	if err != nil || l != nil {
		t.Fatalf("a lease long-poll longer than the timeouts: %v %v, want none after the wait", l, err)
	}

	appendAll(t, ag, at, off, logLines(t, api.LogLine{Kind: "out", Text: "after a second"}))
	if ev := <-events; ev[0] != "lines" || !strings.Contains(ev[1], "after a second") {
		t.Fatalf("live log event after a second: %q", ev)
	}
	if l, err := lines.ReadString('\n'); err != nil || !strings.HasSuffix(l, " after a second\n") {
		t.Fatalf("followed log after a second: %q %v", l, err)
	}
}

// TestSlowClientIsNotAServerError: an upload cut by its deadline, or by
// the client going away, is the client's doing: 408, not a 500 with an
// ERROR line in the server's log. The control: any other error stays 500.
func TestSlowClientIsNotAServerError(t *testing.T) {
	for err, want := range map[error]int{
		fmt.Errorf("read body: %w", os.ErrDeadlineExceeded): http.StatusRequestTimeout,
		fmt.Errorf("put: %w", context.Canceled):             http.StatusRequestTimeout,
		errors.New("disk full"):                             http.StatusInternalServerError,
	} {
		if got := httpStatus(err); got != want {
			t.Errorf("httpStatus(%v) = %d, want %d", err, got, want)
		}
	}
}
