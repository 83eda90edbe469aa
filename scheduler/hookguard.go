package scheduler

import (
	"crypto/rand"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/scheduler/webhook"
)

// otherForge is the one metric label of deliveries to a forge jobrun does
// not know: the URL's segment is the sender's to choose, so it never
// becomes a label itself.
const otherForge = "other"

// knownForge reports whether a webhook URL names a forge jobrun reads.
func knownForge(f string) bool {
	switch f {
	case webhook.GitHub, webhook.GitLab, webhook.Gitea:
		return true
	}
	return false
}

// unguessable returns a fresh random secret, against which no delivery's
// signature checks out.
func unguessable() string {
	return rand.Text() + rand.Text()
}

// hookWarnEvery is how often a refused webhook delivery may write a
// warning: anyone can send them, and the log must not grow with their
// number.
const hookWarnEvery = time.Minute

// warnLimiter writes at most one warning per interval and counts those it
// held back, saying how many in the next one it writes.
type warnLimiter struct {
	mu      sync.Mutex
	next    time.Time
	dropped int
}

// warn writes msg with args at warning level unless one was written less
// than hookWarnEvery ago.
func (l *warnLimiter) warn(log hclog.Logger, msg string, args ...any) {
	l.mu.Lock()
	now := time.Now()
	if now.Before(l.next) {
		l.dropped++
		l.mu.Unlock()
		log.Debug(msg, args...)
		return
	}
	dropped := l.dropped
	l.next, l.dropped = now.Add(hookWarnEvery), 0
	l.mu.Unlock()
	if dropped > 0 {
		args = append(args, "similar_warnings_held_back", dropped)
	}
	log.Warn(msg, args...)
}
