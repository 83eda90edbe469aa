package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// backgroundWriter's step leaves a writer running in the background that
// appends to out/log until it gets SIGTERM, then writes "end" and exits.
// The step returns once the writer has written.
const backgroundWriter = `
job "writer" {
  image   = "IMAGE"
  network = "none"
  step "start" {
    run = <<-EOT
      mkdir -p out
      (trap 'echo end >> out/log; exit 0' TERM; while :; do echo line >> out/log; done) </dev/null >/dev/null 2>&1 &
      while [ ! -s out/log ]; do :; done
    EOT
  }
  artifacts { paths = ["out/log"] }
}
`

// TestLocalArtifactsAfterBackgroundWriterStops: the artifacts are collected
// after the job's processes are stopped, not while a step's background
// writer still appends: the stored file ends with what the writer wrote
// on SIGTERM, complete lines only. Collected while it ran (before the fix),
// the file never had "end" (the writer got SIGKILL at teardown only), and
// the upload failed with "changed since it was collected".
func TestLocalArtifactsAfterBackgroundWriterStops(t *testing.T) {
	file := project(t, backgroundWriter, map[string]string{})
	h := newTestHost(t)
	r := h.local(t, file)
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	var got []string
	filepath.WalkDir(h.artifacts, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, "/out/log") {
			got = append(got, p)
		}
		return nil
	})
	if len(got) != 1 {
		t.Fatalf("artifact files %q, want one out/log", got)
	}
	b, err := os.ReadFile(got[0])
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if !strings.HasSuffix(string(b), "\n") || lines[len(lines)-1] != "end" {
		t.Fatalf("the artifact does not end with the writer's last line (collected while it wrote): %d bytes, ends %q",
			len(b), b[max(0, len(b)-20):])
	}
	for i, l := range lines[:len(lines)-1] {
		if l != "line" {
			t.Fatalf("line %d of the artifact is %q, want \"line\"", i+1, l)
		}
	}
	t.Logf("artifact: %d lines, the last \"end\"", len(lines))
}
