// Command image-bench compares, on one OCI layout (the ≥200 MB debian-go
// test image), side by side and round by round:
//
//   - jobrun's first import+unpack (blobs copied and verified into the store,
//     each layer unpacked by umoci's layer package, DiffIDs checked, the file
//     system flushed) against `umoci raw unpack` and `tar -xzf` of the same
//     layer blobs (each also timed with a `sync` after it, since jobrun's
//     number includes one);
//   - a snapshot's create+mount+unmount+remove against that full unpack.
//
// It prints medians and ratios. Needs root.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/jobrun/jobrun/agent/image"
	"github.com/jobrun/jobrun/bench/internal/result"
)

func main() {
	layout := flag.String("layout", "", "OCI layout directory of the image")
	tag := flag.String("tag", "1.26", "tag in the layout")
	work := flag.String("work", "/var/tmp", "directory to work in (on the disk jobs use)")
	rounds := flag.Int("n", 3, "unpack rounds")
	snaps := flag.Int("snapshots", 200, "snapshot rounds")
	out := flag.String("json", "", "write the figures to this file (package bench/internal/result)")
	flag.Parse()
	if err := run(*layout, *tag, *work, *rounds, *snaps, *out); err != nil {
		fmt.Fprintln(os.Stderr, "image-bench:", err)
		os.Exit(1)
	}
}

func run(layout, tag, work string, rounds, snaps int, out string) error {
	res := result.New("image", "Image unpack: jobrun's first import+unpack against `umoci raw unpack` and `tar -xzf` of the same layers; a snapshot's create+mount+unmount+remove against a full unpack")
	res.Param("image", filepath.Base(layout)+":"+tag)
	res.Param("n", rounds)
	res.Param("snapshots", snaps)
	dir, err := os.MkdirTemp(work, "jobrun-bench-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	blobs, err := layerBlobs(layout, tag)
	if err != nil {
		return err
	}
	var size int64
	for _, b := range blobs {
		fi, err := os.Stat(b)
		if err != nil {
			return err
		}
		size += fi.Size()
	}
	fmt.Printf("image %s:%s, %d layers, %.0f MB compressed\n", layout, tag, len(blobs), float64(size)/1e6)
	res.Param("compressed MB", fmt.Sprintf("%.0f", float64(size)/1e6))

	cases := []struct {
		name string
		run  func(out string) error
	}{
		{"jobrun unpack", func(out string) error { return jobrunUnpack(layout, tag, out) }},
		{"umoci raw unpack", func(out string) error {
			return quiet("umoci", "raw", "unpack", "--image", layout+":"+tag, out)
		}},
		{"umoci raw unpack+sync", func(out string) error {
			if err := quiet("umoci", "raw", "unpack", "--image", layout+":"+tag, out); err != nil {
				return err
			}
			return sh("sync")
		}},
		{"tar -xzf", func(out string) error { return untar(blobs, out) }},
		{"tar -xzf+sync", func(out string) error {
			if err := untar(blobs, out); err != nil {
				return err
			}
			return sh("sync")
		}},
	}
	times := make([][]time.Duration, len(cases))
	for r := range rounds {
		for i, c := range cases {
			out := filepath.Join(dir, fmt.Sprintf("out-%d-%d", r, i))
			sh("sync")
			start := time.Now()
			if err := c.run(out); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			times[i] = append(times[i], time.Since(start))
			fmt.Fprintf(os.Stderr, "round %d: %s %s\n", r+1, c.name, times[i][len(times[i])-1].Round(time.Millisecond))
			if err := os.RemoveAll(out); err != nil {
				return err
			}
		}
	}
	tarMed := median(times[3])
	tarSync := median(times[4])
	fmt.Printf("\n%-24s %10s %12s %14s\n", "unpack (median of "+fmt.Sprint(rounds)+")", "time", "vs tar -xzf", "vs tar+sync")
	for i, c := range cases {
		m := median(times[i])
		fmt.Printf("%-24s %10s %11.2fx %13.2fx\n", c.name, m.Round(time.Millisecond), ratio(m, tarMed), ratio(m, tarSync))
	}

	// Snapshots of an image unpacked once.
	st, err := image.Open(filepath.Join(dir, "state", "images"), image.Options{})
	if err != nil {
		return err
	}
	img, err := st.Resolve(context.Background(), image.LayoutPrefix+layout+":"+tag, "")
	if err != nil {
		return err
	}
	var snap []time.Duration
	for i := range snaps {
		start := time.Now()
		sn, err := st.Snapshot(context.Background(), img, fmt.Sprintf("bench-%d", i))
		if err != nil {
			return err
		}
		if err := sn.Remove(); err != nil {
			return err
		}
		snap = append(snap, time.Since(start))
	}
	sm := median(snap)
	um := median(times[0])
	fmt.Printf("\nsnapshot create+mount+unmount+remove: median %s, p90 %s (%d rounds)\n", sm.Round(time.Microsecond), pct(snap, 0.9).Round(time.Microsecond), snaps)
	fmt.Printf("full jobrun unpack / snapshot: %.0fx faster (target ≥100x, snapshot < 20ms)\n", ratio(um, sm))
	fmt.Printf("tar -xzf / snapshot:           %.0fx faster\n", ratio(tarMed, sm))
	fmt.Printf("\nRATIO jobrun-unpack/tar=%.2f jobrun-unpack/tar+sync=%.2f jobrun-unpack/umoci=%.2f unpack/snapshot=%.0f snapshot_ms=%.2f\n",
		ratio(um, tarMed), ratio(um, tarSync), ratio(um, median(times[1])), ratio(um, sm), float64(sm.Microseconds())/1000)
	if out == "" {
		return nil
	}
	for i, c := range cases {
		sec := make([]float64, len(times[i]))
		for j, d := range times[i] {
			sec[j] = d.Seconds()
		}
		res.Add(result.Metric{Metric: "unpack", Tool: c.name, Unit: "s", Samples: sec, Chart: "bars"})
	}
	res.Compare("unpack", "tar -xzf")
	// A snapshot against a full unpack: the one in ms, the other too.
	// Target: a snapshot at least 100x faster than a full unpack.
	res.Durations("snapshot vs full unpack", "jobrun snapshot", snap).Target = &result.Target{Of: "ratio", Op: "<=", Value: 0.01}
	res.Durations("snapshot vs full unpack", "jobrun unpack", times[0])
	res.Compare("snapshot vs full unpack", "jobrun unpack")
	res.Find("snapshot vs full unpack", "jobrun snapshot").Chart = "bars"
	return res.Write(out)
}

func jobrunUnpack(layout, tag, out string) error {
	st, err := image.Open(filepath.Join(out, "images"), image.Options{})
	if err != nil {
		return err
	}
	_, err = st.Resolve(context.Background(), image.LayoutPrefix+layout+":"+tag, "")
	return err
}

func untar(blobs []string, out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, b := range blobs {
		if err := sh("tar", "-xzf", b, "-C", out); err != nil {
			return err
		}
	}
	return nil
}

// layerBlobs lists the layer blob files of the image tagged tag.
func layerBlobs(layout, tag string) ([]string, error) {
	var idx struct {
		Manifests []struct {
			Digest      string
			Annotations map[string]string
		}
	}
	if err := readJSON(filepath.Join(layout, "index.json"), &idx); err != nil {
		return nil, err
	}
	for _, m := range idx.Manifests {
		if m.Annotations["org.opencontainers.image.ref.name"] != tag {
			continue
		}
		var man struct{ Layers []struct{ Digest string } }
		if err := readJSON(blob(layout, m.Digest), &man); err != nil {
			return nil, err
		}
		var out []string
		for _, l := range man.Layers {
			out = append(out, blob(layout, l.Digest))
		}
		return out, nil
	}
	return nil, fmt.Errorf("no image tagged %s in %s", tag, layout)
}

func blob(layout, digest string) string {
	return filepath.Join(layout, "blobs", "sha256", digest[len("sha256:"):])
}

func readJSON(p string, v any) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func sh(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	return cmd.Run()
}

func median(d []time.Duration) time.Duration { return pct(d, 0.5) }

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// quiet runs a command, showing its output only if it fails.
func quiet(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, out)
	}
	return nil
}
