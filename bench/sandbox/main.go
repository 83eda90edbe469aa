// Command sandbox-bench measures one container's whole life (start, run
// `true`, tear down) on the same busybox rootfs with jobrun's sandbox (in
// process, Docker's seccomp profile and the full security setup included)
// and with its peers, side by side, alternating the tools round by round:
//
//   - jobrun: sandbox.Start + Exec("true") + Destroy on the rootfs dir;
//   - jobrun+overlay: the same on a fresh overlay mount of the rootfs per
//     run (mounted and removed inside the timing), as a job snapshot is;
//   - jobrun snapshot: a job's root without a user namespace (`userns =
//     "off"`), all inside the timing: image.Store.Snapshot of the same
//     rootfs imported as a one-layer image, the container on it, then
//     Snapshot.Remove;
//   - jobrun+userns: a job's root and namespaces in a user namespace (the
//     default), all inside the timing: an id range leased from an
//     idrange.Pool (on a throwaway root: its own etc/passwd, subuid,
//     subgid and lock dir), Runtime.NewNamespaces (no network namespace,
//     as for a job without network), image.Store.SnapshotFor with its user
//     namespace (an overlay over the idmapped layer), the container
//     joining it (Spec.UserNS), then Snapshot.Remove, Namespaces.Close
//     and Lease.Release;
//   - runc run: Debian's runc CLI on a bundle from `runc spec` (which has
//     no seccomp filter), its state root on a tmpfs as /run/runc is on a
//     standard host (jobrun keeps its containers' runtime state in memory
//     too, see sandbox.RunDir);
//   - runc+seccomp: the same with the seccomp filter jobrun installs;
//   - podman: `podman --runtime runc run --rm --network none --rootfs`,
//     with nofile and nproc ulimits lowered to 1024: podman's defaults are
//     higher than this machine allows without CAP_SYS_RESOURCE.
//
// It prints the median of each and the ratio to `runc run`, and what the
// user namespace adds (jobrun+userns minus jobrun snapshot); then the same
// for a job of five steps (one container, five processes) against five
// `runc run`s, and the phases of a jobrun run.
// usage (as root): sandbox-bench [-n N] [-podman-n N]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/bench/internal/result"
	"github.com/jobrun/jobrun/internal/mount"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func main() {
	n := flag.Int("n", 200, "runs per tool")
	podmanN := flag.Int("podman-n", 30, "runs of podman (slow)")
	out := flag.String("json", "", "write the figures to this file (package bench/internal/result)")
	only := flag.String("only", "", "run only these tools (comma-separated names, e.g. \"jobrun snapshot,jobrun+userns,runc run\"), print their medians, write no JSON: for perf stat/record of one variant")
	flag.Parse()
	if *only != "" {
		*out = ""
	}
	if err := run(*n, *podmanN, *out, *only); err != nil {
		fmt.Fprintln(os.Stderr, "sandbox-bench:", err)
		os.Exit(1)
	}
}

type tool struct {
	name string
	runs int
	once func(i int) error
	d    []time.Duration
}

func run(n, podmanN int, out, only string) error {
	res := result.New("sandbox", "A container's start + run `true` + teardown on one busybox rootfs: jobrun's sandbox (also on a job's snapshot, without and with a user namespace) against `runc run` and `podman run --rm`; a 5-step job against five `runc run`s")
	res.Param("n", n)
	res.Param("podman-n", podmanN)
	work, err := os.MkdirTemp("", "jobrun-bench-sandbox")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// A job in a user namespace is set up as its range's root, which must
	// get through to the snapshots below (never list them).
	if err := os.Chmod(work, 0o711); err != nil {
		return err
	}
	root := filepath.Join(work, "rootfs")
	if err := busybox(root); err != nil {
		return err
	}
	uj, err := newUsernsJobs(work, root)
	if err != nil {
		return err
	}
	defer uj.store.Close() // its kept idmapped views of the layers
	rt, err := sandbox.New(filepath.Join(work, "state"), hclog.NewNullLogger())
	if err != nil {
		return err
	}
	defer rt.Close()
	ctx := context.Background()
	var phases [3][]time.Duration // start, exec, destroy of plain jobrun runs
	jobrun := func(rootfs, id string) error {
		t0 := time.Now()
		c, err := rt.Start(ctx, sandbox.Spec{ID: id, Rootfs: rootfs})
		if err != nil {
			return err
		}
		t1 := time.Now()
		exit, err := c.Exec(ctx, sandbox.Process{Args: []string{"true"}})
		t2 := time.Now()
		if derr := c.Destroy(); err == nil {
			err = derr
		}
		if rootfs == root {
			phases[0] = append(phases[0], t1.Sub(t0))
			phases[1] = append(phases[1], t2.Sub(t1))
			phases[2] = append(phases[2], time.Since(t2))
		}
		if err == nil && !exit.Success() {
			err = fmt.Errorf("true: %s", exit)
		}
		return err
	}
	runcRoot, err := memDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(runcRoot)
	bundle, err := runcBundle(work, "bundle", root, false)
	if err != nil {
		return err
	}
	bundleSeccomp, err := runcBundle(work, "bundle-seccomp", root, true)
	if err != nil {
		return err
	}
	tools := []*tool{
		{name: "jobrun", runs: n, once: func(i int) error { return jobrun(root, fmt.Sprintf("bench-%d", i)) }},
		{name: "jobrun+overlay", runs: n, once: func(i int) error {
			snap := filepath.Join(work, "snap")
			merged, err := overlay(root, snap)
			if err != nil {
				return err
			}
			err = jobrun(merged, fmt.Sprintf("bench-ov-%d", i))
			if uerr := unix.Unmount(merged, 0); err == nil {
				err = uerr
			}
			if rerr := os.RemoveAll(snap); err == nil {
				err = rerr
			}
			return err
		}},
		{name: "jobrun snapshot", runs: n, once: func(i int) error {
			return uj.run(ctx, rt, fmt.Sprintf("bench-snap-%d", i), false)
		}},
		{name: "jobrun+userns", runs: n, once: func(i int) error {
			return uj.run(ctx, rt, fmt.Sprintf("bench-uns-%d", i), true)
		}},
		{name: "runc run", runs: n, once: func(i int) error {
			return quiet(exec.Command("runc", "--root", runcRoot, "run", "--bundle", bundle, fmt.Sprintf("bench-runc-%d", i)))
		}},
		{name: "runc+seccomp", runs: n, once: func(i int) error {
			return quiet(exec.Command("runc", "--root", runcRoot, "run", "--bundle", bundleSeccomp, fmt.Sprintf("bench-runcs-%d", i)))
		}},
	}
	// A job of several steps: one container, a process per step, against
	// a fresh `runc run` per step (which is all a runc-based runner could
	// do without a long-lived container).
	const steps = 5
	multi := []*tool{
		{name: fmt.Sprintf("jobrun %d steps", steps), runs: n / 2, once: func(i int) error {
			c, err := rt.Start(ctx, sandbox.Spec{ID: fmt.Sprintf("bench-steps-%d", i), Rootfs: root})
			if err != nil {
				return err
			}
			for s := 0; s < steps && err == nil; s++ {
				var exit *sandbox.Exit
				if exit, err = c.Exec(ctx, sandbox.Process{Args: []string{"true"}}); err == nil && !exit.Success() {
					err = fmt.Errorf("true: %s", exit)
				}
			}
			if derr := c.Destroy(); err == nil {
				err = derr
			}
			return err
		}},
		{name: fmt.Sprintf("runc run x%d", steps), runs: n / 2, once: func(i int) error {
			for s := 0; s < steps; s++ {
				if err := quiet(exec.Command("runc", "--root", runcRoot, "run", "--bundle", bundleSeccomp, fmt.Sprintf("bench-runc5-%d-%d", i, s))); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	if _, err := exec.LookPath("podman"); err == nil && podmanN > 0 {
		tools = append(tools, &tool{name: "podman run", runs: podmanN, once: func(int) error {
			return quiet(exec.Command("podman", "--runtime", "runc", "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--rootfs", root, "true"))
		}})
	}
	single := tools
	tools = append(slices.Clone(single), multi...)
	if only != "" {
		names := strings.Split(only, ",")
		tools = slices.DeleteFunc(tools, func(t *tool) bool { return !slices.Contains(names, t.name) })
		if len(tools) != len(names) {
			return fmt.Errorf("-only %q: a name is not a tool's", only)
		}
	}
	// One warm-up run each, then rounds alternating the tools, so that a
	// machine busy with other work slows all of them alike; in a new
	// order each round, since a tool pays for the kernel's deferred
	// clean-up of the one before it (a network namespace, mounts).
	for _, t := range tools {
		if err := t.once(-1); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	for i := 0; ; i++ {
		ran := false
		rand.Shuffle(len(tools), func(a, b int) { tools[a], tools[b] = tools[b], tools[a] })
		for _, t := range tools {
			if i >= t.runs {
				continue
			}
			ran = true
			begin := time.Now()
			if err := t.once(i); err != nil {
				return fmt.Errorf("%s run %d: %w", t.name, i, err)
			}
			t.d = append(t.d, time.Since(begin))
		}
		if !ran {
			break
		}
	}
	if only != "" {
		for _, t := range tools {
			fmt.Printf("%-20s p50 %s p10 %s\n", t.name, ms(median(t.d)), ms(pct(t.d, 10)))
		}
		uj.printPhases()
		return nil
	}
	fmt.Printf("start + run `true` + destroy, busybox rootfs, median of N runs\n")
	runc := find(single, "runc run")
	table(single, runc)
	snap, uns := find(single, "jobrun snapshot"), find(single, "jobrun+userns")
	fmt.Printf("user namespace adds (median jobrun+userns - jobrun snapshot): %s; jobrun+userns ÷ runc run: %.2fx\n",
		ms(median(uns.d)-median(snap.d)), float64(median(uns.d))/float64(median(runc.d)))
	fmt.Printf("\na job of %d steps: one container, %d processes (jobrun) against %d x `runc run` with seccomp\n", steps, steps, steps)
	table(multi, multi[1])
	fmt.Printf("jobrun phases (median): start %s, exec `true` %s, destroy %s\n",
		ms(median(phases[0])), ms(median(phases[1])), ms(median(phases[2])))
	uj.printPhases()
	if out == "" {
		return nil
	}
	for _, t := range single {
		res.Durations("container life", t.name, t.d)
	}
	res.Compare("container life", "runc run")
	for _, t := range multi {
		res.Durations(fmt.Sprintf("job of %d steps", steps), t.name, t.d)
	}
	res.Compare(fmt.Sprintf("job of %d steps", steps), multi[1].name)
	for i, name := range []string{"start", "exec `true`", "destroy"} {
		res.Durations("jobrun phases", name, phases[i]).Chart = "bars"
	}
	uj.results(res, find(single, "jobrun snapshot"), find(single, "jobrun+userns"))
	return res.Write(out)
}

// find returns the tool named name.
func find(tools []*tool, name string) *tool {
	for _, t := range tools {
		if t.name == name {
			return t
		}
	}
	panic("sandbox-bench: no tool " + name)
}

// table prints each tool's timings and its ratio to ref's median.
func table(tools []*tool, ref *tool) {
	fmt.Printf("%-16s %5s %10s %10s %10s %8s\n", "tool", "N", "p10", "median", "p90", "÷"+ref.name)
	for _, t := range tools {
		fmt.Printf("%-16s %5d %10s %10s %10s %7.2fx\n", t.name, len(t.d),
			ms(pct(t.d, 10)), ms(median(t.d)), ms(pct(t.d, 90)), float64(median(t.d))/float64(median(ref.d)))
	}
}

func quiet(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/1e6) }

func median(d []time.Duration) time.Duration { return pct(d, 50) }

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

// memDir makes a directory on a tmpfs: below /run where that is one (as on
// a systemd host), else below /dev/shm.
func memDir() (string, error) {
	base := "/dev/shm"
	var st unix.Statfs_t
	if unix.Statfs("/run", &st) == nil && st.Type == unix.TMPFS_MAGIC {
		base = "/run"
	}
	return os.MkdirTemp(base, "jobrun-bench-runc")
}

// busybox makes a busybox rootfs at dir from Debian's busybox-static.
func busybox(dir string) error {
	for _, d := range []string{"bin", "etc", "tmp", "proc", "dev", "sys"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	b, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("needs Debian's busybox-static: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), b, 0o755); err != nil {
		return err
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return err
	}
	for _, name := range strings.Fields(string(out)) {
		if name != "busybox" {
			if err := os.Symlink("busybox", filepath.Join(dir, "bin", name)); err != nil {
				return err
			}
		}
	}
	return os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
}

// overlay mounts a fresh overlay of lower under dir and returns the mount
// point.
func overlay(lower, dir string) (string, error) {
	upper, workDir, merged := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, d := range []string{upper, workDir, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	// As agent/image mounts a job's snapshot.
	if err := mount.Overlay(merged, []string{lower}, upper, workDir, 0); err != nil {
		return "", err
	}
	return merged, nil
}

// runcBundle writes a bundle whose config is `runc spec`'s default, made
// non-interactive and running `true` on root; withSeccomp adds the same
// seccomp filter jobrun installs (Docker's default profile, native
// architecture only).
func runcBundle(work, name, root string, withSeccomp bool) (string, error) {
	bundle := filepath.Join(work, name)
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		return "", err
	}
	if err := quiet(exec.Command("runc", "spec", "--bundle", bundle)); err != nil {
		return "", err
	}
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return "", err
	}
	spec.Root = &specs.Root{Path: root, Readonly: true}
	spec.Process.Terminal = false
	spec.Process.Args = []string{"true"}
	if withSeccomp {
		sc, err := seccomp.GetDefaultProfile(&spec)
		if err != nil {
			return "", err
		}
		sc.Architectures = sc.Architectures[:1]
		spec.Linux.Seccomp = sc
	}
	if b, err = json.Marshal(&spec); err != nil {
		return "", err
	}
	return bundle, os.WriteFile(path, b, 0o644)
}
