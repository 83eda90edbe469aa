// Package rundir names the in-memory directories that hold the runtime
// state of a state dir's containers: TOP/sandbox/NAME, TOP a directory
// named jobrun on a tmpfs (/run/jobrun, /dev/shm/jobrun, or
// $XDG_RUNTIME_DIR/jobrun without root) and NAME a hash of the state dir's
// path. agent/sandbox makes them; internal/leakcheck tells another state
// dir's from its own. One naming for both, so they cannot drift apart.
package rundir

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strings"
)

// marker is what stands between TOP's parent and NAME in every run dir's
// path.
const marker = "/jobrun/sandbox/"

// nameLen is the length of a NAME: 8 bytes of SHA-256, in hex.
const nameLen = 16

// Name is the name of the run dir of the state dir at abs, an absolute
// path: the first 8 bytes of the SHA-256 of the cleaned path, in hex.
func Name(abs string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(abs)))
	return hex.EncodeToString(sum[:8])
}

// Path is the run dir of the state dir at abs, an absolute path, below
// top (a directory named jobrun): top/sandbox/Name(abs).
func Path(top, abs string) string {
	return filepath.Join(top, "sandbox", Name(abs))
}

// Of reports the NAME of the run dir p is in or is (".../jobrun/sandbox/
// NAME[/...]"), and whether p is in one at all.
func Of(p string) (name string, ok bool) {
	_, rest, ok := strings.Cut(p, marker)
	if !ok {
		return "", false
	}
	name, _, _ = strings.Cut(rest, "/")
	if len(name) != nameLen {
		return "", false
	}
	if _, err := hex.DecodeString(name); err != nil {
		return "", false
	}
	return name, true
}

// Other reports whether p is in the run dir of a state dir other than the
// one at abs: another test's or another process's, not abs's business.
func Other(p, abs string) bool {
	name, ok := Of(p)
	return ok && name != Name(abs)
}
