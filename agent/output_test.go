package agent

import (
	"strings"
	"testing"
)

func TestLineWriter(t *testing.T) {
	var got []string
	var mores []bool
	w := &lineWriter{emit: func(l string, more bool) { got, mores = append(got, l), append(mores, more) }}
	for _, chunk := range []string{"one\ntw", "o\r\n", "", "three\n\nfour"} {
		w.Write([]byte(chunk))
	}
	w.Close()
	want := []string{"one", "two", "three", "", "four"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines = %q, want %q", got, want)
	}
	got, mores = nil, nil
	w.Write([]byte(strings.Repeat("x", maxLine+10)))
	if len(got) != 1 || len(got[0]) != maxLine+10 || !mores[0] {
		t.Errorf("an over-long line was not passed on as a piece (%d lines)", len(got))
	}
	// The line's end, even with nothing after the cut, closes it.
	w.Write([]byte("\n"))
	if len(got) != 2 || got[1] != "" || mores[1] {
		t.Errorf("after the cut: %q %v, want an empty last piece", got[1:], mores[1:])
	}
}

func TestMasker(t *testing.T) {
	key := "-----BEGIN KEY-----\nAAAAsecretline1\nBBBBsecretline2\n}\n-----END KEY-----"
	m := newMasker([]string{"hunter2", "hunter2extra", key, ""})
	cases := map[string]string{
		"password is hunter2":       "password is ***",
		"hunter2extra and hunter2":  "*** and ***",
		"line AAAAsecretline1 here": "line *** here",
		"BBBBsecretline2":           "***",
		"}":                         "}",
		"nothing secret":            "nothing secret",
	}
	for in, want := range cases {
		if got := m.mask(in); got != want {
			t.Errorf("mask(%q) = %q, want %q", in, got, want)
		}
	}
	if got := newMasker(nil).mask("hunter2"); got != "hunter2" {
		t.Errorf("empty masker changed output: %q", got)
	}
}

func TestLogCap(t *testing.T) {
	c := &logCap{limit: 10}
	var kept, notices []string
	for _, l := range []string{"abcd", "efgh", "ijkl", "mnop"} {
		ok, n := c.admit(l)
		if ok {
			kept = append(kept, l)
		}
		if n != "" {
			notices = append(notices, n)
		}
	}
	if len(kept) != 2 || len(notices) != 1 || !strings.Contains(notices[0], "10 B limit") {
		t.Errorf("kept %q, notices %q", kept, notices)
	}
	if ok, _ := (&logCap{}).admit(strings.Repeat("x", 1<<20)); !ok {
		t.Error("no limit refused a line")
	}
}
