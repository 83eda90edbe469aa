// Command network-bench measures what bridge networking adds to a job
// container's start: the median of N starts (default 50) of a busybox
// container with network "none" (the sandbox makes a namespace with
// loopback only) against the same with bridge networking (agent/network
// Setup, then the sandbox joining its namespace), alternating round by
// round. Bridge is measured twice: on an idle host, where the job makes
// the bridge and the nftables table and Manager.Close removes them after
// its teardown (as for `jobrun local`), and with another job's network
// held open (a busy agent), where both stay. "start" is until the
// container is ready for its first step; "life" adds `true` as the step
// and the whole teardown (with Close on the idle host).
// usage (as root): network-bench [-n N]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/agent/network"
	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/bench/internal/result"
)

func main() {
	n := flag.Int("n", 50, "starts per variant")
	out := flag.String("json", "", "write the figures to this file (package bench/internal/result)")
	flag.Parse()
	if err := run(*n, *out); err != nil {
		fmt.Fprintln(os.Stderr, "network-bench:", err)
		os.Exit(1)
	}
}

type variant struct {
	name        string
	close       bool // Close the manager after the teardown (an idle host)
	start, life []time.Duration
}

func run(n int, out string) error {
	res := result.New("network", "What bridge networking adds to a job container's start over network \"none\": on an idle host (bridge and table made and removed per job) and on a busy one")
	res.Param("n", n)
	work, err := os.MkdirTemp("", "jobrun-bench-network")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	root, err := busybox(filepath.Join(work, "rootfs"))
	if err != nil {
		return err
	}
	state := filepath.Join(work, "state")
	rt, err := sandbox.New(state, hclog.NewNullLogger())
	if err != nil {
		return err
	}
	nm, err := network.New(network.Options{StateDir: state})
	if err != nil {
		return err
	}
	defer nm.Close()
	ctx := context.Background()
	once := func(v *variant, i int, bridge bool) error {
		id := fmt.Sprintf("bench-%s-%d", strings.ReplaceAll(v.name, " ", "-"), i)
		begin := time.Now()
		spec := sandbox.Spec{ID: id, Rootfs: root}
		var net *network.Net
		if bridge {
			if net, err = nm.Setup(ctx, id); err != nil {
				return err
			}
			spec.NetNS, spec.ResolvConf = net.Path, net.ResolvConf
		}
		c, err := rt.Start(ctx, spec)
		if err != nil {
			if net != nil {
				net.Teardown()
			}
			return err
		}
		v.start = append(v.start, time.Since(begin))
		exit, err := c.Exec(ctx, sandbox.Process{Args: []string{"/bin/true"}})
		if err == nil && !exit.Success() {
			err = fmt.Errorf("true: %s", exit)
		}
		if derr := c.Destroy(); err == nil {
			err = derr
		}
		if net != nil {
			if terr := net.Teardown(); err == nil {
				err = terr
			}
		}
		if v.close {
			if cerr := nm.Close(); err == nil {
				err = cerr
			}
		}
		v.life = append(v.life, time.Since(begin))
		return err
	}
	none := &variant{name: "none"}
	idle := &variant{name: "bridge idle host", close: true}
	busy := &variant{name: "bridge busy host"}
	// One warm-up of each, not counted.
	for _, v := range []*variant{none, idle} {
		if err := once(v, -1, v != none); err != nil {
			return err
		}
		v.start, v.life = nil, nil
	}
	// Round by round: none, bridge on an idle host, then bridge while
	// another job's network (made and removed outside the timing) keeps
	// the bridge and the table in place.
	for i := range n {
		if err := once(none, i, false); err != nil {
			return err
		}
		if err := once(idle, i, true); err != nil {
			return err
		}
		hold, err := nm.Setup(ctx, fmt.Sprintf("bench-hold-%d", i))
		if err != nil {
			return err
		}
		err = once(busy, i, true)
		if terr := hold.Teardown(); err == nil {
			err = terr
		}
		if err != nil {
			return err
		}
	}
	base := median(none.start)
	fmt.Printf("%d starts each (busybox, start = until ready for the first step; life = start + `true` + teardown)\n", n)
	fmt.Printf("%-18s %12s %12s %14s %8s\n", "network", "start p50", "life p50", "added start", "ratio")
	for _, v := range []*variant{none, idle, busy} {
		fmt.Printf("%-18s %12s %12s %14s %7.2fx\n", v.name, ms(median(v.start)), ms(median(v.life)),
			ms(median(v.start)-base), float64(median(v.start))/float64(base))
	}
	if out == "" {
		return nil
	}
	for _, v := range []*variant{none, idle, busy} {
		res.Durations("start", v.name, v.start)
		res.Durations("life", v.name, v.life)
	}
	res.Compare("start", none.name)
	res.Compare("life", none.name)
	return res.Write(out)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// busybox builds a root filesystem of busybox-static and its applets.
func busybox(root string) (string, error) {
	for _, d := range []string{"bin", "etc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	b, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", fmt.Errorf("needs /bin/busybox (Debian's busybox-static): %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), b, 0o755); err != nil {
		return "", err
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return "", err
	}
	for _, name := range strings.Fields(string(out)) {
		if name != "busybox" {
			if err := os.Symlink("busybox", filepath.Join(root, "bin", name)); err != nil {
				return "", err
			}
		}
	}
	return root, nil
}
