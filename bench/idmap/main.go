// Command idmap-bench measures what idmapping adds to a job's root, by
// number of image layers (1, 5, 20), alternating round by round:
//
//   - plain: the overlay image snapshots mount today (make dirs, mount,
//     unmount, remove);
//   - kept: the same overlay on layers seen through an idmap.Layers view
//     made once (as a range slot could keep one), upper owned by the range;
//   - one-shot: a user namespace, the layers' idmapped mount, the overlay,
//     the idmapped mount taken off again, and at the end the removal;
//   - userns: making and dropping the user namespace alone;
//
// and, as a job gets its root from jobrun's image store (a synthetic image
// of that many small layers, imported from an OCI layout):
//
//   - Snapshot: image.Store.Snapshot + Snapshot.Remove, a job's root with
//     `userns = "off"`;
//   - SnapshotFor: image.Store.SnapshotFor with a user namespace made once
//     before (as Runtime.NewNamespaces makes a job's, timed apart as
//     "userns alone") + Snapshot.Remove: the idmapped mount of each layer,
//     the overlay over them and its upper and work given to the range.
//
// It prints medians and the difference to plain and, with -json, writes
// every round's time (package bench/internal/result): one metric per layer
// count, each idmapped variant compared with plain, and one per layer
// count for the store's snapshots, SnapshotFor compared with Snapshot.
// Needs root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jobrun/jobrun/agent/image"
	"github.com/jobrun/jobrun/bench/internal/ocilayout"
	"github.com/jobrun/jobrun/bench/internal/result"
	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/mount"
)

func main() {
	work := flag.String("work", "/var/tmp", "directory to work in (on the disk jobs use)")
	rounds := flag.Int("n", 200, "rounds per variant and layer count")
	out := flag.String("json", "", "write the figures to this file (package bench/internal/result)")
	flag.Parse()
	res := result.New("idmap", "What idmapping adds to a job's root, by number of image layers: a plain overlay (today's image snapshot) against one on a kept idmapped view of the layers and one with its own user namespace and idmapped mount (and the user namespace alone); the image store's Snapshot (userns off) against SnapshotFor (userns on); alternating round by round")
	res.Param("rounds", *rounds)
	res.Param("work", *work)
	err := run(res, *work, *rounds)
	if err == nil && *out != "" {
		err = res.Write(*out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "idmap-bench:", err)
		os.Exit(1)
	}
}

// tools names the variants, in the order run measures them; the first,
// plain, is every other's peer.
var tools = []string{"plain overlay", "kept idmapped view", "one-shot userns+idmap", "userns alone", "Snapshot", "SnapshotFor"}

func run(res *result.File, work string, rounds int) error {
	if rounds < 1 {
		return fmt.Errorf("-n %d: want at least 1 round", rounds)
	}
	m := idmap.Mapping{UID: 3_000_000_000, GID: 3_000_000_000, Size: 65536}
	dir, err := os.MkdirTemp(work, "jobrun-bench-idmap-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Printf("%-7s %10s %10s %10s %10s %14s %14s %10s %12s %10s\n", "layers", "plain", "kept", "one-shot", "userns", "kept-plain", "one-shot-plain", "Snapshot", "SnapshotFor", "For-Snap")
	for _, n := range []int{1, 5, 20} {
		lowers, err := makeLayers(filepath.Join(dir, fmt.Sprint(n), "layers"), n)
		if err != nil {
			return err
		}
		job := filepath.Join(dir, fmt.Sprint(n), "job")
		u, err := idmap.NewUserns(m)
		if err != nil {
			return err
		}
		kept, err := idmap.NewLayers(u, filepath.Join(dir, fmt.Sprint(n), "mapped"))
		u.Close()
		if err != nil {
			return err
		}
		st, img, err := storeImage(filepath.Join(dir, fmt.Sprint(n), "store"), n)
		if err != nil {
			return err
		}
		ju, err := idmap.NewUserns(m)
		if err != nil {
			return err
		}
		variants := []func() error{
			func() error { return plain(lowers, job) },
			func() error {
				o, err := kept.Overlay(lowers, job)
				if err != nil {
					return err
				}
				return o.Remove()
			},
			func() error {
				u, err := idmap.NewUserns(m)
				if err != nil {
					return err
				}
				defer u.Close()
				o, err := idmap.NewOverlay(u, lowers, job)
				if err != nil {
					return err
				}
				return o.Remove()
			},
			func() error {
				u, err := idmap.NewUserns(m)
				if err != nil {
					return err
				}
				return u.Close()
			},
			func() error {
				sn, err := st.Snapshot(context.Background(), img, "job")
				if err != nil {
					return err
				}
				return sn.Remove()
			},
			func() error {
				sn, err := st.SnapshotFor(context.Background(), img, "job", ju)
				if err != nil {
					return err
				}
				return sn.Remove()
			},
		}
		times := make([][]time.Duration, len(variants))
		for range rounds {
			for i, v := range variants {
				t0 := time.Now()
				if err := v(); err != nil {
					kept.Close()
					st.Close()
					ju.Close()
					return fmt.Errorf("%s, %d layers: %w", tools[i], n, err)
				}
				times[i] = append(times[i], time.Since(t0))
			}
		}
		if err := errors.Join(kept.Close(), ju.Close(), st.Close()); err != nil {
			return err
		}
		metric := fmt.Sprintf("job root, %d layers", n)
		if n == 1 {
			metric = "job root, 1 layer"
		}
		snapMetric := fmt.Sprintf("job snapshot, %d layers", n)
		if n == 1 {
			snapMetric = "job snapshot, 1 layer"
		}
		if img.Flat != "" {
			// Too many layers for one overlay mount's options (with the
			// idmapped views' longer paths, see image.Store's fits): the
			// store unpacked them into one at import, and that one is
			// what every job's snapshot is made of.
			snapMetric += " (flattened by the store)"
		}
		for i, t := range times {
			if i >= 4 {
				res.Durations(snapMetric, tools[i], t)
			} else {
				res.Durations(metric, tools[i], t)
			}
		}
		res.Compare(metric, tools[0])
		res.Compare(snapMetric, tools[4])
		med := make([]time.Duration, len(times))
		for i, t := range times {
			slices.Sort(t)
			med[i] = t[len(t)/2]
		}
		fmt.Printf("%-7d %10s %10s %10s %10s %14s %14s %10s %12s %10s\n", n, ms(med[0]), ms(med[1]), ms(med[2]), ms(med[3]), ms(med[1]-med[0]), ms(med[2]-med[0]), ms(med[4]), ms(med[5]), ms(med[5]-med[4]))
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// storeImage opens an image store in dir and imports into it a synthetic
// image of n small layers (ocilayout.SmallLayer) from an OCI layout. The
// store flattens an image with too many layers for one overlay mount
// (img.Flat): 20 are too many.
func storeImage(dir string, n int) (*image.Store, *image.Image, error) {
	var layers [][]byte
	for i := range n {
		l, err := ocilayout.SmallLayer(i)
		if err != nil {
			return nil, nil, err
		}
		layers = append(layers, l)
	}
	ref, err := ocilayout.Write(filepath.Join(dir, "layout"), "bench", layers)
	if err != nil {
		return nil, nil, err
	}
	st, err := image.Open(filepath.Join(dir, "images"), image.Options{})
	if err != nil {
		return nil, nil, err
	}
	img, err := st.Resolve(context.Background(), ref, "")
	if err != nil {
		return nil, nil, err
	}
	return st, img, nil
}

// makeLayers makes n small layers in dir, root-owned as unpacked.
func makeLayers(dir string, n int) ([]string, error) {
	var out []string
	for i := range n {
		l := filepath.Join(dir, fmt.Sprintf("l%d", i))
		for _, p := range []string{"etc", "usr/bin", fmt.Sprintf("usr/lib/l%d", i)} {
			if err := os.MkdirAll(filepath.Join(l, p), 0o755); err != nil {
				return nil, err
			}
		}
		if err := os.WriteFile(filepath.Join(l, "etc", fmt.Sprintf("f%d", i)), []byte("x\n"), 0o644); err != nil {
			return nil, err
		}
		out = append([]string{l}, out...) // top first
	}
	return out, nil
}

// plain is an image snapshot's overlay as agent/image mounts it.
func plain(lowers []string, job string) error {
	for _, d := range []string{"", "upper", "work", "rootfs"} {
		if err := os.Mkdir(filepath.Join(job, d), 0o755); err != nil {
			return err
		}
	}
	root := filepath.Join(job, "rootfs")
	if err := mount.Overlay(root, lowers, filepath.Join(job, "upper"), filepath.Join(job, "work"), 0); err != nil {
		return err
	}
	if err := mount.Unmount(root); err != nil {
		return err
	}
	return os.RemoveAll(job)
}
