package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jobrun/jobrun/agent/idrange"
	"github.com/jobrun/jobrun/agent/image"
	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/bench/internal/ocilayout"
	"github.com/jobrun/jobrun/bench/internal/result"
)

// usernsJobs runs a job's container the way agent.Runner does, on a
// snapshot of the busybox rootfs imported as a one-layer image, without
// a user namespace (Store.Snapshot) or with one (a leased range,
// Runtime.NewNamespaces, Store.SnapshotFor, Spec.UserNS), and keeps the
// phases of each run.
type usernsJobs struct {
	store *image.Store
	img   *image.Image
	pool  *idrange.Pool
	// phases of each variant, by name, in the order of phaseNames.
	phases map[bool][][]time.Duration
}

// phaseNames are the phases a usernsJobs run records; the user namespace
// ones (lease+namespaces, the last's release and close) are 0 without.
var phaseNames = []string{"lease+namespaces", "snapshot", "start", "exec `true`", "destroy", "snapshot remove", "namespaces close+release"}

// benchRange is where the bench's ranges land on the host: far above the
// host's own ids and its jobrun entries (/etc/subuid), so that the bench
// never shares ids with a live job on this host.
const benchRange = 3_000_000_000

func newUsernsJobs(work, rootfs string) (*usernsJobs, error) {
	ctx := context.Background()
	layer, err := ocilayout.DirLayer(rootfs)
	if err != nil {
		return nil, err
	}
	ref, err := ocilayout.Write(filepath.Join(work, "layout"), "busybox", [][]byte{layer})
	if err != nil {
		return nil, err
	}
	st, err := image.Open(filepath.Join(work, "images"), image.Options{})
	if err != nil {
		return nil, err
	}
	img, err := st.Resolve(ctx, ref, "")
	if err != nil {
		return nil, err
	}
	pool, err := benchPool(ctx, filepath.Join(work, "ids"), 1)
	if err != nil {
		return nil, err
	}
	return &usernsJobs{store: st, img: img, pool: pool, phases: map[bool][][]time.Duration{
		false: make([][]time.Duration, len(phaseNames)), true: make([][]time.Duration, len(phaseNames))}}, nil
}

// benchPool opens an id range pool of slots ranges on a throwaway root in
// dir (etc/passwd with a jobrun user, etc/subuid and etc/subgid entries
// at benchRange) with its own lock dir, as idrange.Open opens the host's.
func benchPool(ctx context.Context, dir string, slots int) (*idrange.Pool, error) {
	etc := filepath.Join(dir, "root", "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return nil, err
	}
	entry := fmt.Sprintf("%s:%d:%d\n", idrange.DefaultUser, benchRange, slots*idrange.Size)
	for name, body := range map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\n" + idrange.DefaultUser + ":x:999:999::/nonexistent:/usr/sbin/nologin\n",
		"group":  "root:x:0:\n" + idrange.DefaultUser + ":x:999:\n",
		"subuid": entry,
		"subgid": entry,
	} {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	return idrange.Open(ctx, idrange.Options{Root: filepath.Join(dir, "root"), LockDir: filepath.Join(dir, "locks"), Slots: slots})
}

// run is one job's container life on its own snapshot named id, with a
// user namespace if userns; it records its phases.
func (u *usernsJobs) run(ctx context.Context, rt *sandbox.Runtime, id string, userns bool) (err error) {
	var t [8]time.Time
	t[0] = time.Now()
	var (
		lease *idrange.Lease
		ns    *sandbox.Namespaces
	)
	if userns {
		if lease, err = u.pool.Allocate(); err != nil {
			return err
		}
		if ns, err = rt.NewNamespaces(id, lease.Mapping(), false); err != nil {
			return errors.Join(err, lease.Release())
		}
	}
	t[1] = time.Now()
	snap, err := u.store.SnapshotFor(ctx, u.img, id, ns.Userns())
	if err != nil {
		return errors.Join(err, ns.Close(), release(lease))
	}
	t[2] = time.Now()
	c, err := rt.Start(ctx, sandbox.Spec{ID: id, Rootfs: snap.Rootfs(), UserNS: ns.UserPath()})
	if err != nil {
		return errors.Join(err, snap.Remove(), ns.Close(), release(lease))
	}
	t[3] = time.Now()
	exit, err := c.Exec(ctx, sandbox.Process{Args: []string{"true"}})
	if err == nil && !exit.Success() {
		err = fmt.Errorf("true: %s", exit)
	}
	t[4] = time.Now()
	err = errors.Join(err, c.Destroy())
	t[5] = time.Now()
	err = errors.Join(err, snap.Remove())
	t[6] = time.Now()
	err = errors.Join(err, ns.Close(), release(lease))
	t[7] = time.Now()
	if err != nil {
		return err
	}
	for i := range phaseNames {
		u.phases[userns][i] = append(u.phases[userns][i], t[i+1].Sub(t[i]))
	}
	return nil
}

func release(l *idrange.Lease) error {
	if l == nil {
		return nil
	}
	return l.Release()
}

// printPhases prints the median of each phase, without and with a user
// namespace, and the difference.
func (u *usernsJobs) printPhases() {
	fmt.Printf("\njob phases (median): %-26s %10s %10s %10s\n", "", "snapshot", "+userns", "difference")
	for i, name := range phaseNames {
		off, on := median(u.phases[false][i]), median(u.phases[true][i])
		fmt.Printf("                     %-26s %10s %10s %10s\n", name, ms(off), ms(on), ms(on-off))
	}
}

// results adds the phases of both variants to res, and the two variants'
// container lives again as a metric of their own, +userns compared with
// the snapshot without (the ratio the user namespace costs).
func (u *usernsJobs) results(res *result.File, snap, uns *tool) {
	const metric = "job container life, userns on vs off"
	res.Durations(metric, "jobrun snapshot (userns off)", snap.d)
	res.Durations(metric, "jobrun+userns", uns.d).Peer = "jobrun snapshot (userns off)"
	for _, userns := range []bool{false, true} {
		m := "job phases, userns off"
		if userns {
			m = "job phases, userns on"
		}
		for i, name := range phaseNames {
			if !userns && (i == 0 || i == len(phaseNames)-1) {
				continue // nothing to do without a user namespace
			}
			res.Durations(m, name, u.phases[userns][i]).Chart = "bars"
		}
	}
}
