// Package units parses and formats the byte sizes and durations that users
// write in job files, flags and configuration. It is the one owner of that
// syntax, so "2GiB" means the same thing everywhere.
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

var sizeSuffixes = []struct {
	suffix string
	mult   float64
}{
	// Longest first so "KiB" is not read as "B".
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"ki", 1 << 10}, {"mi", 1 << 20}, {"gi", 1 << 30}, {"ti", 1 << 40},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"b", 1},
}

// ParseSize parses a byte size such as "512MiB", "2GiB", "1.5G", "100MB" or
// "4096". Binary suffixes (KiB, Ki, K) are powers of 1024; decimal ones (KB,
// MB) are powers of 1000. The result must be positive.
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "" {
		return 0, fmt.Errorf("empty size")
	}
	mult := 1.0
	for _, x := range sizeSuffixes {
		if strings.HasSuffix(t, x.suffix) {
			mult = x.mult
			t = strings.TrimSpace(strings.TrimSuffix(t, x.suffix))
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
		return 0, fmt.Errorf("invalid size %q: want a number with an optional unit, like 512MiB or 2GiB", s)
	}
	if n <= 0 {
		return 0, fmt.Errorf("invalid size %q: must be greater than zero", s)
	}
	v := n * mult
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	if v < 1 {
		return 0, fmt.Errorf("invalid size %q: less than one byte", s)
	}
	return int64(v), nil
}

// FormatSize renders n bytes with a binary unit, for example "2 GiB" or
// "512 MiB", keeping one decimal only where it matters.
func FormatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + string("KMGTPE"[exp]) + "iB"
}

// ParseDuration parses a duration such as "20m", "1h30m" or "90s", and also
// accepts days ("7d") and weeks ("2w") for retention settings. The result
// must be positive.
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty duration")
	}
	var d time.Duration
	var err error
	switch {
	case strings.HasSuffix(t, "d") || strings.HasSuffix(t, "w"):
		unit := 24 * time.Hour
		if strings.HasSuffix(t, "w") {
			unit *= 7
		}
		var n float64
		n, err = strconv.ParseFloat(t[:len(t)-1], 64)
		d = time.Duration(n * float64(unit))
	default:
		d, err = time.ParseDuration(t)
	}
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a number with a unit, like 90s, 20m, 1h30m or 7d", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("invalid duration %q: must be greater than zero", s)
	}
	return d, nil
}

// FormatDuration renders d the way users write it: "20m", "1h30m", "1.5s".
func FormatDuration(d time.Duration) string {
	if d >= time.Minute && d%time.Second == 0 {
		s := d.String() // "1h30m0s"
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	}
	if d >= time.Second {
		s := strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
		return strings.TrimSuffix(s, ".0") + "s"
	}
	return d.Round(time.Millisecond).String()
}
