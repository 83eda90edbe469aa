package cache

import (
	"path/filepath"
	"strings"
	"testing"
)

// usedVolume is a new manager and a volume of it acquired (repo "r",
// name "c") with a 64 KiB file "f" written in it, as a job leaves one.
func usedVolume(t *testing.T) (*Manager, *Volume) {
	t.Helper()
	m, _ := newManager(t, Options{})
	v := acquire(t, m, Request{Repo: "r", Name: "c"})
	writeFile(t, filepath.Join(v.Path(), "f"), strings.Repeat("x", 64<<10))
	return m, v
}
