package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// maxID is the longest ID: an RFC 1123 DNS label.
const maxID = 63

// JobID derives the job's identifier from its name: lowercase letters,
// digits and inner hyphens, at most 63 bytes, so it serves as a hostname
// (an RFC 1123 label), a cgroup name and a storage key. A name that is
// already such an identifier is its own ID; any other name gets a short
// hash of itself appended, so distinct names give distinct IDs:
// "build (goos=linux)" becomes "build-goos-linux-" plus 8 hex digits.
func JobID(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
			continue
		}
		if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	id := strings.TrimRight(b.String(), "-")
	if id == name && id != "" && len(id) <= maxID {
		return id
	}
	sum := sha256.Sum256([]byte(name))
	suffix := hex.EncodeToString(sum[:4])
	if max := maxID - len(suffix) - 1; len(id) > max {
		id = strings.TrimRight(id[:max], "-")
	}
	if id == "" {
		return "job-" + suffix
	}
	return id + "-" + suffix
}
