package scheduler

import (
	"net/http"
	"time"
)

// Timeouts bound how long a client may hold a connection. Zero fields
// take DefaultTimeouts.
type Timeouts struct {
	// ReadHeader bounds reading a request's headers, Read the whole
	// request and Write its reply on an ordinary route, Idle a kept-alive
	// connection between requests.
	ReadHeader, Read, Write, Idle time.Duration
	// Progress is what the long routes get instead (internal/deadline):
	// a live log or a download each write, an upload (artifact, log
	// chunk) each next progressBytes.
	Progress time.Duration
}

// DefaultTimeouts are the server's timeouts unless configured.
var DefaultTimeouts = Timeouts{ReadHeader: 10 * time.Second, Read: time.Minute, Write: time.Minute, Idle: 2 * time.Minute, Progress: time.Minute}

// progressBytes is how much of an upload must come within each Progress:
// about 1 KiB/s at the default, which any real link beats and a trickling
// attacker does not.
const progressBytes = 64 << 10

func (t Timeouts) withDefaults() Timeouts {
	d := DefaultTimeouts
	for _, f := range []struct{ v, d *time.Duration }{{&t.ReadHeader, &d.ReadHeader}, {&t.Read, &d.Read}, {&t.Write, &d.Write}, {&t.Idle, &d.Idle}, {&t.Progress, &d.Progress}} {
		if *f.v > 0 {
			*f.d = *f.v
		}
	}
	return d
}

// HTTPServer returns an http.Server of the server's Handler with its
// timeouts; the long routes set their own deadlines.
func (s *Server) HTTPServer() *http.Server {
	t := s.cfg.Timeouts
	return &http.Server{Handler: s.Handler(), ReadHeaderTimeout: t.ReadHeader, ReadTimeout: t.Read, WriteTimeout: t.Write, IdleTimeout: t.Idle}
}
