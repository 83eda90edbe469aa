package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestSecretMaskedInLongLine runs a real step that prints a secret 16384
// times on one line (240 KiB, written at once) far longer than the 64 KiB
// the agent frames a line in: the cuts fall inside copies of the secret,
// and no part of it may show.
func TestSecretMaskedInLongLine(t *testing.T) {
	file := project(t, `
job "long" {
  image   = "IMAGE"
  secrets = ["TOKEN"]
  step "print" {
    run = "s=\"$TOKEN,\"; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14; do s=\"$s$s\"; done; printf '%s\\n' \"$s\"; echo after=$TOKEN"
  }
}
`, map[string]string{})
	h := newTestHost(t)
	const token = "hunter2-s3cr3t"
	// Not h.local: the output is 300 KB.
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"--state-dir", h.state, "local", "--artifacts", h.artifacts, file,
		"--secret", "TOKEN=" + token}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\n%.2000s\n%.2000s", code, out.String(), errb.String())
	}
	all := out.String() + errb.String()
	// The control: the step really printed every copy, masked.
	if n := strings.Count(all, "***"); n != 16385 {
		t.Errorf("%d masked copies in the output, want 16385", n)
	}
	order(t, all, `after=\*\*\*`)
	for _, s := range []string{token, "hunter2", "s3cr3t", "-s3c", "r2-s"} {
		if i := strings.Index(all, s); i >= 0 {
			t.Errorf("part %q of the secret is in the output: %q", s, all[max(i-40, 0):min(i+40, len(all))])
		}
	}
}
