package api

import (
	"slices"
	"strings"
	"testing"
)

// TestParseServers: --server lists split on commas and repeat; a URL
// that is not http(s)://HOST or comes twice is refused, naming it.
func TestParseServers(t *testing.T) {
	s, err := ParseServers([]string{"http://a:1, http://b:2/", "https://c"})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.All(); !slices.Equal(got, []string{"http://a:1", "http://b:2", "https://c"}) {
		t.Fatalf("servers: %q", got)
	}
	if s.Current() != "http://a:1" {
		t.Fatalf("first server: %s", s.Current())
	}
	// A failure moves to the next, once per failed server: a second
	// report of the same failure does not skip a server.
	s.failed("http://a:1")
	s.failed("http://a:1")
	if s.Current() != "http://b:2" {
		t.Fatalf("after a failure: %s, want http://b:2", s.Current())
	}
	s.failed("http://b:2")
	s.failed("https://c")
	if s.Current() != "http://a:1" {
		t.Fatalf("after every server failed: %s, want the first again", s.Current())
	}
	for _, bad := range [][]string{{"ftp://a"}, {"a:8080"}, {"http://a,http://a"}, {""}, {"http://"}} {
		if _, err := ParseServers(bad); err == nil {
			t.Errorf("%q accepted", bad)
		} else if bad[0] != "" && !strings.Contains(err.Error(), "server URL") && !strings.Contains(err.Error(), "no server") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
