package scheduler

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
	"github.com/jobrun/jobrun/internal/units"
)

// Limits bound what an agent may store for one attempt. Zero fields take
// the defaults (DefaultLimits).
type Limits struct {
	// LogOutput is the most output an attempt's log may hold, counted as
	// the agent's --log-limit counts it: the text of each line and its
	// newline, not the JSON lines it is stored as. jobrun's own lines
	// (notices, steps) get logAllowance on top, so a quota equal to the
	// agent's cap never refuses a job the agent kept whole.
	LogOutput int64
	// ArtifactBytes is the most an attempt's artifacts may hold in all,
	// ArtifactFile the most one file may, ArtifactFiles how many files.
	ArtifactBytes int64
	ArtifactFile  int64
	ArtifactFiles int
}

// DefaultLimits are the limits of a server configured with none: twice
// the agent's default log cap, and generous artifacts.
var DefaultLimits = Limits{LogOutput: 128 << 20, ArtifactBytes: 10 << 30, ArtifactFile: 5 << 30, ArtifactFiles: 10000}

// Fixed bounds on what an agent sends.
const (
	// logAllowance is the output jobrun's own lines may add to a log past
	// LogOutput: the agent's truncation notice, step starts and ends.
	logAllowance = 1 << 20
	// storedPerOutput bounds the stored JSON of a log at this many times
	// its output quota (JSON escapes and every line's time, kind and step;
	// a log of empty lines is the worst legitimate case).
	storedPerOutput = 16
	// Artifact paths: as long as Linux allows, no deeper than any real
	// tree (node_modules included).
	maxArtifactPath  = 4096
	maxArtifactDepth = 128
	maxSegment       = 255
	// maxSteps bounds the steps a finish report or step update names;
	// maxText the length of its words (reason, exit, status).
	maxSteps = 10000
	maxText  = 64 << 10
)

// withDefaults fills the zero fields of l.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.LogOutput > 0 {
		d.LogOutput = l.LogOutput
	}
	if l.ArtifactBytes > 0 {
		d.ArtifactBytes = l.ArtifactBytes
	}
	if l.ArtifactFile > 0 {
		d.ArtifactFile = l.ArtifactFile
	}
	if l.ArtifactFiles > 0 {
		d.ArtifactFiles = l.ArtifactFiles
	}
	return d
}

// logQuota is what AppendLog enforces: output bytes and stored bytes.
type logQuota struct {
	Output, Stored int64
}

func (l Limits) logQuota() logQuota {
	return logQuota{Output: l.LogOutput + logAllowance, Stored: storedPerOutput * (l.LogOutput + logAllowance)}
}

// errQuota reports something an agent sent past a limit: 413.
var errQuota = errors.New("over the server's limit")

// outputBytes counts the output in a piece of a log as the agent's cap
// does: each JSON line's text and newline. A piece of a line cut between
// chunks (or a line that is not JSON) counts its raw bytes.
func outputBytes(data []byte) int64 {
	var n int64
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		var l struct {
			Text string `json:"x"`
		}
		if json.Unmarshal(line, &l) == nil {
			n += int64(len(l.Text)) + 1
		} else {
			n += int64(len(line)) + 1
		}
	}
	return n
}

// checkText bounds a string an agent sends.
func checkText(what, s string) error {
	if len(s) > maxText {
		return fmt.Errorf("%s is %d bytes, over %d", what, len(s), maxText)
	}
	return nil
}

func checkCount(what string, v int64) error {
	if v < 0 {
		return fmt.Errorf("%s %d: must not be negative", what, v)
	}
	return nil
}

// checkStep validates a step state an agent sends.
func checkStep(st api.Step) error {
	if st.Index < 0 || st.Index >= maxSteps {
		return fmt.Errorf("step index %d: want 0 to %d", st.Index, maxSteps-1)
	}
	if err := checkCount(fmt.Sprintf("step %d duration", st.Index), int64(st.Duration)); err != nil {
		return err
	}
	if st.Name == "" || len(st.Name) > maxSegment || st.Status == "" || len(st.Status) > 32 {
		return fmt.Errorf("step %d: a name of 1 to %d bytes and a status of 1 to 32 bytes are needed", st.Index, maxSegment)
	}
	return checkText(fmt.Sprintf("step %d exit", st.Index), st.Exit)
}

// checkResult validates a finish report: every number an agent sends is
// a count or a duration, none negative; the cache hits are among the
// lookups.
func checkResult(r api.Result, lim Limits) error {
	for _, c := range []struct {
		what string
		v    int64
	}{
		{"duration", int64(r.Duration)}, {"usage.cpu", int64(r.Usage.CPU)}, {"usage.peak_memory", r.Usage.PeakMemory},
		{"usage.peak_pids", r.Usage.PeakPids}, {"cache_hits", int64(r.CacheHits)}, {"caches", int64(r.Caches)},
	} {
		if err := checkCount(c.what, c.v); err != nil {
			return err
		}
	}
	if r.CacheHits > r.Caches {
		return fmt.Errorf("cache_hits %d: more than the %d caches looked up", r.CacheHits, r.Caches)
	}
	if err := checkText("reason", r.Reason); err != nil {
		return err
	}
	if len(r.Steps) > maxSteps {
		return fmt.Errorf("%d steps: at most %d", len(r.Steps), maxSteps)
	}
	for _, st := range r.Steps {
		if err := checkStep(st); err != nil {
			return err
		}
	}
	if len(r.Artifacts) > lim.ArtifactFiles {
		return fmt.Errorf("%d artifacts: at most %d", len(r.Artifacts), lim.ArtifactFiles)
	}
	for _, p := range r.Artifacts {
		if err := checkArtifactPath(p); err != nil {
			return err
		}
	}
	return nil
}

// checkArtifactPath validates a stored file's path: relative, clean,
// printable UTF-8, within the length and depth limits.
func checkArtifactPath(p string) error {
	switch {
	case len(p) > maxArtifactPath:
		return fmt.Errorf("artifact path of %d bytes: at most %d", len(p), maxArtifactPath)
	case !utf8.ValidString(p) || p == "" || strings.HasPrefix(p, "/") || strings.ContainsRune(p, '\\') || strings.ContainsFunc(p, unicode.IsControl):
		return fmt.Errorf("artifact path %q: want a relative path of printable UTF-8 without backslashes", p)
	}
	parts := strings.Split(p, "/")
	if len(parts) > maxArtifactDepth {
		return fmt.Errorf("artifact path %.80q...: %d levels deep, at most %d", p, len(parts), maxArtifactDepth)
	}
	for _, s := range parts {
		if s == "" || s == "." || s == ".." || len(s) > maxSegment {
			return fmt.Errorf("artifact path %q: every part must be a name of 1 to %d bytes, not %q or %q", p, maxSegment, ".", "..")
		}
	}
	return nil
}

// checkManifest validates a manifest an agent commits against the files
// it uploaded (path to size): every file listed was uploaded with that
// size, once, with a sha256 and a regular file's mode.
func checkManifest(m *artifacts.Manifest, uploaded map[string]int64, lim Limits) error {
	if len(m.Files) > lim.ArtifactFiles || len(m.Skipped) > lim.ArtifactFiles {
		return fmt.Errorf("%w: manifest of %d files and %d skipped; at most %d", errQuota, len(m.Files), len(m.Skipped), lim.ArtifactFiles)
	}
	seen := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		if err := checkArtifactPath(f.Path); err != nil {
			return err
		}
		if seen[f.Path] {
			return fmt.Errorf("manifest lists %q twice", f.Path)
		}
		seen[f.Path] = true
		size, ok := uploaded[f.Path]
		switch {
		case !ok:
			return fmt.Errorf("manifest lists %q, which was not uploaded", f.Path)
		case f.Size != size:
			return fmt.Errorf("manifest says %q has %d bytes; %d were uploaded", f.Path, f.Size, size)
		case f.Mode&^fs.ModePerm != 0:
			return fmt.Errorf("manifest: %q has mode %v; want a regular file's permission bits", f.Path, f.Mode)
		}
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != 32 {
			return fmt.Errorf("manifest: %q has sha256 %.80q; want 64 hex digits", f.Path, f.SHA256)
		}
	}
	for _, s := range m.Skipped {
		if err := checkText("skipped path", s.Path); err != nil {
			return err
		}
		if err := checkText("skipped reason", s.Reason); err != nil {
			return err
		}
	}
	return nil
}

// quotaText says a limit in words for a 413.
func quotaText(what string, limit int64) string {
	return fmt.Sprintf("%s (the server's limit is %s)", what, units.FormatSize(limit))
}
