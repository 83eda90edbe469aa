package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/jobrun/jobrun/internal/lockfile"
	"github.com/jobrun/jobrun/internal/pdeath"
)

// Rootless networks (issue #18). Without root there is no bridge, no veth
// pair and no host firewall: jobrun runs as root of the user's own user
// namespace, which can make network namespaces but not touch the host's.
// A job's namespace (made by this process, so owned by the user's
// namespace) gets its connectivity from pasta (Debian's passt), which
// copies the host's address and routes into it and carries the job's
// TCP, UDP and ICMP out through ordinary sockets of the host's network
// namespace, as rootless podman does:
//
//   - IPv4 only (-4), as the bridge's jobs;
//   - no inbound port forwarding (-t none -u none) and none from the
//     namespace to the host's loopback (-T none -U none), and the gateway
//     address is the real gateway, not the host (--no-map-gw): the job's
//     127.0.0.1 is its own, the host's loopback services are out of reach;
//   - the deny-list is enforced in the job's namespace by nftables rules
//     this process sets as its root (table inet jobrun, chain output:
//     ip daddr RANGE drop), after an accept for each allow entry that
//     names one of the host's addresses (allow.go); the job's containers
//     have no CAP_NET_ADMIN to change them.
//
// Unlike the bridge, a rootless job can reach the host's non-loopback
// addresses other than the one pasta copies in (rootless podman's
// behaviour): only the host's own firewall could refuse that.
//
// pasta runs in the foreground as this process's child, dies with it
// (Pdeathsig), and is killed by Teardown; it also ends by itself when the
// namespace's file is removed.

// pastaPID is the file, next to the job's lock, that holds pasta's pid.
const pastaPID = "pasta.pid"

// setupRootless is setup in rootless mode: the job's namespace at
// STATE/network/ID/netns, pasta attached to it, the deny-list in it.
func (m *Manager) setupRootless(ctx context.Context, id string) (_ *Net, err error) {
	pasta, err := exec.LookPath("pasta")
	if err != nil {
		return nil, fmt.Errorf("network %s: without root, network = \"bridge\" needs pasta (Debian/Ubuntu: apt install passt; Fedora: passt)", id)
	}
	dir := filepath.Join(m.jobs, id)
	n := &Net{m: m, id: id, Path: filepath.Join(dir, "netns"), Comment: RuleComment(m.tag, id)}
	if err := m.claim(n); err != nil {
		return nil, err
	}
	defer n.undoIfFailed(&err)
	// Listed here, in the host's namespace, before the job's exists.
	allow, err := hostAllows(m.o.Allow)
	if err != nil {
		return nil, err
	}
	if err := makeNetNS(n.Path); err != nil {
		return nil, err
	}
	if err := rootlessSysctls(n.Path); err != nil {
		return nil, err
	}
	if err := addDenyRules(n.Path, m.o.Deny, allow); err != nil {
		return nil, err
	}
	// Not waited for here: the job's container starts while pasta
	// configures the namespace; Ready waits for it before the steps.
	if n.pasta, err = startPasta(pasta, n.Path, filepath.Join(dir, pastaPID)); err != nil {
		return nil, err
	}
	return n, nil
}

// startPasta starts pasta on the namespace at path; its ready channel is
// closed once pasta has configured the namespace (it writes its pid file
// then) or has ended first (readyErr says how).
func startPasta(bin, path, pidFile string) (*pastaProc, error) {
	cmd := exec.Command(bin, "--config-net", "--netns", path, "-4", "--no-map-gw",
		"-t", "none", "-u", "none", "-T", "none", "-U", "none",
		"--foreground", "--quiet", "--pid", pidFile)
	p := &pastaProc{cmd: cmd, done: make(chan struct{}), ready: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	// Started from a thread that lives as long as pasta: a parent-death
	// signal tied to a thread Go ends (one a goroutine left locked, as
	// namespace code does) would kill pasta mid-job.
	wait, err := pdeath.Start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start pasta: %w", err)
	}
	go func() {
		p.err = wait()
		close(p.done)
	}()
	// Ends when pasta is ready or gone (Teardown kills it).
	go func() {
		defer close(p.ready)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.done:
				msg := pastaMessage(p.out.String())
				if strings.Contains(msg, "/dev/net/tun") {
					msg += " (pasta needs to open /dev/net/tun: most distributions make it mode 0666; here it is not)"
				}
				p.readyErr = fmt.Errorf("pasta ended before the network was ready: %v: %s", p.err, msg)
				return
			case <-tick.C:
				if _, err := os.Stat(pidFile); err == nil {
					return
				}
			}
		}
	}()
	return p, nil
}

// pastaMessage is what pasta said, for an error: its first lines, without
// its complaints that it has no syslog (a job's has none) and the usage
// it prints after a bad option.
func pastaMessage(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "Failed to send ") && strings.HasSuffix(l, " to syslog") {
			continue
		}
		if strings.HasPrefix(l, "Usage: ") || len(keep) == 3 {
			break
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "; ")
}

// pastaProc is a job's running pasta.
type pastaProc struct {
	cmd      *exec.Cmd
	out      strings.Builder // its output, to read once done is closed
	done     chan struct{}   // closed when it has ended; err is Wait's
	err      error
	ready    chan struct{} // closed when the namespace is configured or pasta ended
	readyErr error         // why it is not ready, set before ready is closed
}

// kill asks pasta to end, without waiting for it.
func (p *pastaProc) kill() {
	if p != nil {
		_ = p.cmd.Process.Kill()
	}
}

// stop kills pasta and waits for it to be gone.
func (p *pastaProc) stop() {
	if p == nil {
		return
	}
	p.kill()
	<-p.done
}

// Ready waits until n carries traffic: for a rootless job's network,
// until pasta has configured its namespace (Setup returns before); the
// error says why it never will. Other networks are ready once made. A nil
// n is ready.
func (n *Net) Ready(ctx context.Context) error {
	if n == nil || n.pasta == nil {
		return nil
	}
	select {
	case <-n.pasta.ready:
		if n.pasta.readyErr != nil {
			return fmt.Errorf("network %s: %w", n.id, n.pasta.readyErr)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("network %s: waiting for pasta: %w", n.id, ctx.Err())
	}
}

// Stop begins the end of n's connectivity without waiting for it: a
// rootless job's pasta is killed, so that its exit (in which the kernel
// removes its tap device, some 30 ms) runs alongside the rest of the
// job's teardown; Teardown then waits for it. Once the job's containers
// are gone. Nothing for other networks; a nil n does nothing.
func (n *Net) Stop() error {
	if n != nil {
		n.pasta.kill()
	}
	return nil
}

// teardownRootless removes what setupRootless made for n: pasta first,
// then the namespace and the directory.
func (n *Net) teardownRootless() error {
	n.pasta.stop()
	n.pasta = nil
	if err := removeNetNS(n.Path); err != nil {
		return err
	}
	return os.RemoveAll(filepath.Join(n.m.jobs, n.id))
}

// cleanupRootless is Cleanup in rootless mode: the namespaces of jobs
// whose lock is free (their pasta died with their process).
func (m *Manager) cleanupRootless(ctx context.Context) error {
	ents, err := os.ReadDir(m.jobs)
	if err != nil {
		return fmt.Errorf("network cleanup: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("network cleanup: %w", err)
		}
		if !e.IsDir() || !idPattern.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join(m.jobs, e.Name())
		lock, err := lockfile.TryAcquire(filepath.Join(dir, "lock"))
		if errors.Is(err, lockfile.ErrLocked) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := removeNetNS(filepath.Join(dir, "netns")); err != nil {
			errs = append(errs, err)
		} else if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		} else {
			m.o.Log.Info("removed network left by a dead process", "id", e.Name())
		}
		lock.Release()
	}
	return errors.Join(errs...)
}

// addDenyRules drops, in the namespace at path, every packet to the
// deny-list's ranges but TCP to the allow-list's address:ports (of the
// host: hostAllows), which it accepts first:
//
//	table inet jobrun {
//	  chain output {
//	    type filter hook output priority filter
//	    ip daddr ADDR tcp dport PORT accept
//	    ip daddr RANGE drop
//	  }
//	}
//
// Without a deny-list there is nothing to drop, and so nothing to accept
// before it.
func addDenyRules(path string, deny []netip.Prefix, allow []netip.AddrPort) error {
	if len(deny) == 0 {
		return nil
	}
	// The netlink socket is made on inNetNS's thread, so in the
	// namespace (nftables' WithNetNSFd needs CAP_SYS_ADMIN over the
	// host's namespace to go back).
	return inNetNS(path, func() error {
		return denyRules(path, deny, allow)
	})
}

func denyRules(path string, deny []netip.Prefix, allow []netip.AddrPort) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := c.AddTable(table(tableName))
	accept := nftables.ChainPolicyAccept
	out := c.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	for _, a := range allow {
		c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: cat(ipv4(), tcpTo(a), verdict(expr.VerdictAccept))})
	}
	for _, p := range deny {
		c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: cat(ipv4(), ipMatch(16, p), verdict(expr.VerdictDrop))})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: deny-list in %s: %w", path, err)
	}
	return nil
}

// rootlessSysctls is setSysctls in rootless mode: the same unprivileged
// ports, and ping for every group this namespace maps (the kernel refuses
// a range that names unmapped groups, as setSysctls's whole range).
func rootlessSysctls(path string) error {
	b, err := os.ReadFile("/proc/self/gid_map")
	if err != nil {
		return fmt.Errorf("sysctls: %w", err)
	}
	var top uint64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		in, err1 := strconv.ParseUint(f[0], 10, 32)
		n, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 == nil && err2 == nil && n > 0 && in+n-1 > top {
			top = in + n - 1
		}
	}
	sysctls := []struct{ name, value string }{
		{"net/ipv4/ip_unprivileged_port_start", "0"},
		{"net/ipv4/ping_group_range", fmt.Sprintf("0 %d", top)},
	}
	return inNetNS(path, func() error {
		for _, s := range sysctls {
			if err := os.WriteFile("/proc/sys/"+s.name, []byte(s.value+"\n"), 0o644); err != nil {
				return fmt.Errorf("sysctl %s in %s: %w", s.name, path, err)
			}
		}
		return nil
	})
}
