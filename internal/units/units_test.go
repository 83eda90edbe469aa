package units

import (
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"4096": 4096, "512MiB": 512 << 20, "2GiB": 2 << 30, "2gib": 2 << 30,
		"1.5G": 3 << 29, "100MB": 100e6, "64k": 64 << 10, "1Ki": 1024, "10 MiB": 10 << 20,
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "two", "-1GiB", "0", "1.5.5M", "NaN", "0.1B", "1e30T"} {
		if n, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, n)
		}
	}
}

func TestFormatSize(t *testing.T) {
	cases := map[int64]string{
		12: "12 B", 1024: "1 KiB", 2 << 30: "2 GiB", 1536 << 20: "1.5 GiB", 512 << 20: "512 MiB",
	}
	for in, want := range cases {
		if got := FormatSize(in); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{
		"20m": 20 * time.Minute, "1h30m": 90 * time.Minute, "90s": 90 * time.Second,
		"7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "1.5d": 36 * time.Hour,
	}
	for in, want := range good {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "20", "m", "-5m", "0s", "xd", "soon"} {
		if d, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, d)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	cases := map[time.Duration]string{
		20 * time.Minute: "20m", 90 * time.Minute: "1h30m", 2 * time.Hour: "2h",
		1500 * time.Millisecond: "1.5s", 2 * time.Second: "2s", 12 * time.Millisecond: "12ms",
	}
	for in, want := range cases {
		if got := FormatDuration(in); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", in, got, want)
		}
	}
}
