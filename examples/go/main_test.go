package main

import "testing"

func TestGreeting(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{nil, "hello, world"},
		{[]string{"jobrun"}, "hello, jobrun"},
		{[]string{"a", "b"}, "hello, a and b"},
	} {
		if got := greeting(tc.names); got != tc.want {
			t.Errorf("greeting(%q) = %q, want %q", tc.names, got, tc.want)
		}
	}
}
