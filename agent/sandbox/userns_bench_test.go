package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/mount"
)

// BenchmarkJobContainer is a job container's life (its root, start, a
// `true` step, destroy, root removed) without and with a user namespace
// (the namespaces, an idmapped overlay root, the container joining them):
// the cost user namespaces add per job.
func BenchmarkJobContainer(b *testing.B) {
	root := rootfs(b)
	dir := filepath.Join(b.TempDir(), "state")
	rt, err := New(dir, hclog.NewNullLogger())
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	if err := rt.Ready(); err != nil {
		b.Fatal(err)
	}
	rt.waitFilters = true
	snaps := filepath.Join(b.TempDir(), "snapshots")
	if err := os.Mkdir(snaps, 0o711); err != nil {
		b.Fatal(err)
	}
	traversable(b, snaps)
	run := func(b *testing.B, i int, userns bool) {
		id := fmt.Sprintf("bench-%d", i)
		s := Spec{ID: id}
		var cleanup func() error
		if userns {
			ns, err := rt.NewNamespaces(id, rangeA, false)
			if err != nil {
				b.Fatal(err)
			}
			o, err := idmap.NewOverlay(ns.Userns(), []string{root}, filepath.Join(snaps, id))
			if err != nil {
				b.Fatal(err)
			}
			s.Rootfs, s.UserNS = o.Rootfs(), ns.UserPath()
			cleanup = func() error { return errorsJoin(o.Remove(), ns.Close()) }
		} else {
			d := filepath.Join(snaps, id)
			for _, sub := range []string{"", "upper", "work", "rootfs"} {
				if err := os.Mkdir(filepath.Join(d, sub), 0o755); err != nil {
					b.Fatal(err)
				}
			}
			s.Rootfs = filepath.Join(d, "rootfs")
			if err := mount.Overlay(s.Rootfs, []string{root}, filepath.Join(d, "upper"), filepath.Join(d, "work"), 0); err != nil {
				b.Fatal(err)
			}
			cleanup = func() error { return errorsJoin(mount.Unmount(s.Rootfs), os.RemoveAll(d)) }
		}
		c, err := rt.Start(context.Background(), s)
		if err != nil {
			b.Fatal(err)
		}
		exit, err := c.Exec(context.Background(), Process{Args: []string{"true"}})
		if err != nil || !exit.Success() {
			b.Fatal(exit, err)
		}
		if err := errorsJoin(c.Destroy(), cleanup()); err != nil {
			b.Fatal(err)
		}
	}
	for _, userns := range []bool{false, true} {
		b.Run(fmt.Sprintf("userns=%v", userns), func(b *testing.B) {
			i := 0
			for b.Loop() {
				run(b, i, userns)
				i++
			}
		})
	}
}

func errorsJoin(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
