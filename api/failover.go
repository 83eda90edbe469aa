package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// Servers is the list of servers a Client may speak to: servers sharing
// one database (and so one queue, one set of agents and leases), tried in
// turn. The client stays with the server that last answered and moves to
// the next when one cannot be reached or answers 502, 503 or 504. Copies of
// a Client share it, so every call of an agent fails over at once.
type Servers struct {
	mu   sync.Mutex
	urls []string
	cur  int
}

// NewServers checks and keeps urls, the first tried first.
func NewServers(urls []string) (*Servers, error) {
	if len(urls) == 0 {
		return nil, errors.New("no server URL")
	}
	seen := map[string]bool{}
	for _, u := range urls {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("server URL %q: want http://HOST:PORT or https://HOST:PORT", u)
		}
		if seen[u] {
			return nil, fmt.Errorf("server URL %q given twice", u)
		}
		seen[u] = true
	}
	return &Servers{urls: append([]string(nil), urls...)}, nil
}

// ParseServers splits comma-separated lists of server URLs (each element
// of list may hold several, as a repeated flag or an environment variable
// gives them).
func ParseServers(list []string) (*Servers, error) {
	var urls []string
	for _, l := range list {
		for _, u := range strings.Split(l, ",") {
			if u = strings.TrimSpace(u); u != "" {
				urls = append(urls, strings.TrimSuffix(u, "/"))
			}
		}
	}
	return NewServers(urls)
}

// Current is the server the next call goes to.
func (s *Servers) Current() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.urls[s.cur]
}

// All lists the servers, for messages.
func (s *Servers) All() []string { return append([]string(nil), s.urls...) }

// failed moves on from server u, unless another call already did.
func (s *Servers) failed(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.urls[s.cur] == u {
		s.cur = (s.cur + 1) % len(s.urls)
	}
}

func (s *Servers) len() int {
	if s == nil {
		return 1
	}
	return len(s.urls)
}

// base is the URL the next request goes to: the current server of
// c.Servers, or c.Base.
func (c *Client) base() string {
	if c.Servers != nil {
		return c.Servers.Current()
	}
	return strings.TrimSuffix(c.Base, "/")
}

// Server is the URL of the server the client speaks to now.
func (c *Client) Server() string { return c.base() }

// unavailable reports whether a reply says the server (or a proxy before
// it) cannot serve now, so another one should be asked.
func unavailable(code int) bool {
	return code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}

// roundTrip sends a request to the current server and, when that server
// cannot be reached, to the next ones, as long as the body can be sent
// again (nil, or an io.Seeker such as a bytes.Reader). A body that cannot
// be replayed is sent once; the next call then goes to the next server.
// size, if not negative, is the body's length.
func (c *Client) roundTrip(ctx context.Context, method, path string, body io.Reader, ctype string, size int64) (*http.Response, error) {
	seeker, _ := body.(io.Seeker)
	var start int64
	if seeker != nil {
		var err error
		if start, err = seeker.Seek(0, io.SeekCurrent); err != nil {
			seeker = nil
		}
	}
	var lastErr error
	for try := 0; try < c.Servers.len(); try++ {
		base := c.base()
		if try > 0 {
			if body != nil && seeker == nil {
				break
			}
			if seeker != nil {
				if _, err := seeker.Seek(start, io.SeekStart); err != nil {
					break
				}
			}
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		if body != nil && seeker != nil && req.Body != http.NoBody {
			// The request must not close the body: it may be sent again.
			req.Body = io.NopCloser(body)
		}
		if size >= 0 {
			req.ContentLength = size
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if c.Token != "" {
			req.Header.Set("Authorization", "Bearer "+c.Token)
		}
		resp, err := c.http().Do(req)
		if err == nil && !(c.Servers != nil && unavailable(resp.StatusCode)) {
			return resp, nil
		}
		if err == nil {
			lastErr = statusError(method, path, resp)
			resp.Body.Close()
		} else {
			lastErr = fmt.Errorf("%s %s: %w", method, path, err)
		}
		if c.Servers == nil {
			return nil, lastErr
		}
		c.Servers.failed(base)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}
