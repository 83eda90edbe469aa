package idmap_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/mount"
	"github.com/jobrun/jobrun/internal/testenv"
)

// BenchmarkUserns is the cost of a user namespace for a job's mounts.
func BenchmarkUserns(b *testing.B) {
	testenv.RequireRoot(b)
	for b.Loop() {
		u, err := idmap.NewUserns(testMap)
		if err != nil {
			b.Fatal(err)
		}
		u.Close()
	}
}

// BenchmarkOverlay is a job's root from n layers, made and removed:
// idmapped (a user namespace, the layers' idmapped mount, the overlay,
// the idmapped mount taken off again), kept (an overlay on a Layers made
// once, as a range slot could keep one), against plain (the overlay
// image snapshots mount today).
func BenchmarkOverlay(b *testing.B) {
	testenv.RequireRoot(b)
	for _, n := range []int{1, 5, 20} {
		dir := b.TempDir()
		var lowers []string
		for i := range n {
			l := filepath.Join(dir, "layers", fmt.Sprintf("l%d", i)) // as the image store keeps them
			for _, p := range []string{"etc", "usr/bin", fmt.Sprintf("usr/lib/l%d", i)} {
				if err := os.MkdirAll(filepath.Join(l, p), 0o755); err != nil {
					b.Fatal(err)
				}
			}
			lowers = append(lowers, l)
		}
		b.Run(fmt.Sprintf("layers=%d/idmapped", n), func(b *testing.B) {
			for b.Loop() {
				u, err := idmap.NewUserns(testMap)
				if err != nil {
					b.Fatal(err)
				}
				o, err := idmap.NewOverlay(u, lowers, filepath.Join(dir, "job"))
				u.Close()
				if err != nil {
					b.Fatal(err)
				}
				if err := o.Remove(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("layers=%d/kept", n), func(b *testing.B) {
			u, err := idmap.NewUserns(testMap)
			if err != nil {
				b.Fatal(err)
			}
			ls, err := idmap.NewLayers(u, filepath.Join(dir, "mapped"))
			u.Close()
			if err != nil {
				b.Fatal(err)
			}
			defer ls.Close()
			for b.Loop() {
				o, err := ls.Overlay(lowers, filepath.Join(dir, "job"))
				if err != nil {
					b.Fatal(err)
				}
				if err := o.Remove(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("layers=%d/plain", n), func(b *testing.B) {
			for b.Loop() {
				job := filepath.Join(dir, "job")
				for _, d := range []string{"", "upper", "work", "rootfs"} {
					if err := os.Mkdir(filepath.Join(job, d), 0o755); err != nil {
						b.Fatal(err)
					}
				}
				root := filepath.Join(job, "rootfs")
				if err := mount.Overlay(root, lowers, filepath.Join(job, "upper"), filepath.Join(job, "work"), 0); err != nil {
					b.Fatal(err)
				}
				if err := mount.Unmount(root); err != nil {
					b.Fatal(err)
				}
				if err := os.RemoveAll(job); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
