package main

import (
	"strings"
	"testing"
)

// TestLocalJobNamesOneMatrixCombination: --job takes a job's full name,
// commas and all, so one combination of a two-key matrix can be run; the
// flag repeats for several jobs. The control: the block's name runs every
// combination.
func TestLocalJobNamesOneMatrixCombination(t *testing.T) {
	file := project(t, `
job "build" {
  image  = "IMAGE"
  matrix {
    arch = ["amd64", "arm64"]
    os   = ["linux", "plan9"]
  }
  step "build" { run = "echo building-$ARCH-$OS" }
  env = { ARCH = "${matrix.arch}", OS = "${matrix.os}" }
}
job "lint" {
  image = "IMAGE"
  step "lint" { run = "echo linting" }
}
`, map[string]string{})
	h := newTestHost(t)
	r := h.local(t, file, "--job", "build (arch=amd64, os=linux)", "--job", "lint")
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.err)
	}
	order(t, r.out, `build \(arch=amd64, os=linux\) › build \| building-amd64-linux`)
	order(t, r.out, `lint › lint \| linting`)
	for _, other := range []string{"building-amd64-plan9", "building-arm64-linux", "building-arm64-plan9"} {
		if strings.Contains(r.out, other) {
			t.Errorf("--job named one combination, and %s ran too", other)
		}
	}
	all := h.local(t, file, "--job", "build")
	for _, want := range []string{"building-amd64-linux", "building-amd64-plan9", "building-arm64-linux", "building-arm64-plan9"} {
		if !strings.Contains(all.out, want) {
			t.Errorf("--job build: %s did not run", want)
		}
	}
	if strings.Contains(all.out, "linting") {
		t.Error("--job build ran lint")
	}
}
