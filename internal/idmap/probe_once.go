package idmap

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/jobrun/jobrun/internal/mount"
	"github.com/jobrun/jobrun/internal/proberecord"
)

// ProbedFile is the file in a state dir that records where ProbeOnce last
// passed: the kernel's release, the state dir's file system and the
// user namespace limit.
const ProbedFile = "idmap-ok"

// ProbeOnce is Probe(dir) once per kernel, file system and user
// namespace limit: a pass is recorded in dir (ProbedFile) and a later
// call with the same kernel release, file system under dir and
// /proc/sys/user/max_user_namespaces returns at once, without the
// probe's user namespace, directories, mounts and unmounts (a few ms of
// every `jobrun local`). Anything else (no record, another kernel, the
// dir moved to another file system, user namespaces limited otherwise,
// a record that cannot be read) probes again.
func ProbeOnce(dir string) error {
	return proberecord.Once(filepath.Join(dir, ProbedFile),
		func() (string, error) { return probeOnceKey(dir) },
		func() error { return Probe(dir) })
}

// probeOnceKey is mount.ProbeKey(dir) and the user namespace limit (0
// turns them off).
func probeOnceKey(dir string) (string, error) {
	key, err := mount.ProbeKey(dir)
	if err != nil {
		return "", err
	}
	max, err := os.ReadFile("/proc/sys/user/max_user_namespaces")
	if err != nil {
		return "", err
	}
	return key + "max_user_namespaces " + strings.TrimSpace(string(max)) + "\n", nil
}
