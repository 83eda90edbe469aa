// Package deadline gives a server's long requests their own deadlines in
// place of the http.Server's Read and WriteTimeout, through
// http.ResponseController: a stream or a download may last as long as it
// keeps moving, an upload as long as it comes at a useful rate, a long
// poll as long as its wait. A client that stops is dropped all the same.
package deadline

import (
	"io"
	"net/http"
	"time"
)

// Writer is a ResponseWriter whose every write (and flush) must finish
// within idle of its start, however long the reply takes in all.
type Writer struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration
}

// NewWriter wraps w. (The request's read deadline needs no lifting: once
// its body is read, net/http clears it to watch for the client closing.)
func NewWriter(w http.ResponseWriter, idle time.Duration) *Writer {
	return &Writer{w: w, rc: http.NewResponseController(w), idle: idle}
}

// Header returns the reply's header.
func (d *Writer) Header() http.Header { return d.w.Header() }

// WriteHeader sends the status.
func (d *Writer) WriteHeader(code int) {
	d.rc.SetWriteDeadline(time.Now().Add(d.idle))
	d.w.WriteHeader(code)
}

// Write writes p within idle.
func (d *Writer) Write(p []byte) (int, error) {
	d.rc.SetWriteDeadline(time.Now().Add(d.idle))
	return d.w.Write(p)
}

// Flush sends what is buffered within idle.
func (d *Writer) Flush() {
	d.rc.SetWriteDeadline(time.Now().Add(d.idle))
	d.rc.Flush()
}

// Unwrap is for http.ResponseController.
func (d *Writer) Unwrap() http.ResponseWriter { return d.w }

// Body returns r's body for an upload: its read deadline moves on by idle
// each time another min bytes have come, so an upload at better than
// min per idle may take as long as it needs, and one trickling slower is
// dropped. The reply then has idle to go out.
func Body(w http.ResponseWriter, r *http.Request, idle time.Duration, min int64) io.Reader {
	b := &body{r: r.Body, rc: http.NewResponseController(w), idle: idle, min: min}
	b.extend()
	return b
}

type body struct {
	r     io.Reader
	rc    *http.ResponseController
	idle  time.Duration
	min   int64
	since int64 // bytes since the deadline last moved
}

func (b *body) extend() {
	t := time.Now().Add(b.idle)
	b.rc.SetReadDeadline(t)
	b.rc.SetWriteDeadline(t.Add(b.idle))
	b.since = 0
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if b.since += int64(n); b.since >= b.min {
		b.extend()
	}
	return n, err
}

// Wait gives a request that waits up to d before it answers (a long poll)
// its deadlines: d and then idle to read the rest of the request and
// write the reply.
func Wait(w http.ResponseWriter, d, idle time.Duration) {
	rc := http.NewResponseController(w)
	t := time.Now().Add(d + idle)
	rc.SetReadDeadline(t)
	rc.SetWriteDeadline(t)
}
