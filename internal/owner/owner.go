// Package owner names a state directory in host-wide resources that cannot
// live under it (network links, firewall rules), so that start-up clean-up
// and the leak checker can tell one state dir's resources from another's
// when several jobrun processes, or several tests, share a host.
package owner

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
)

// Tag returns a short stable tag for stateDir: 12 hex digits of the SHA-256
// of its absolute path with symbolic links resolved (when it exists), so
// that /tmp/x and a symbolic link to it get the same tag.
func Tag(stateDir string) string {
	dir, err := filepath.Abs(stateDir)
	if err != nil {
		dir = filepath.Clean(stateDir)
	}
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		dir = r
	}
	sum := sha256.Sum256([]byte(dir))
	return hex.EncodeToString(sum[:6])
}
