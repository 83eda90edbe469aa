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
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/jobrun/jobrun/internal/lockfile"
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
	if n.pasta, err = startPasta(ctx, pasta, n.Path, filepath.Join(dir, pastaPID)); err != nil {
		return nil, err
	}
	return n, nil
}

// startPasta starts pasta on the namespace at path and returns once it has
// configured it (it writes its pid file then).
func startPasta(ctx context.Context, bin, path, pidFile string) (*pastaProc, error) {
	cmd := exec.Command(bin, "--config-net", "--netns", path, "-4", "--no-map-gw",
		"-t", "none", "-u", "none", "-T", "none", "-U", "none",
		"--foreground", "--quiet", "--pid", pidFile)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start pasta: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			msg := strings.TrimSpace(out.String())
			if strings.Contains(msg, "/dev/net/tun") {
				msg += " (pasta needs to open /dev/net/tun: most distributions make it mode 0666; here it is not)"
			}
			return nil, fmt.Errorf("pasta ended before the network was ready: %v: %s", err, msg)
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-exited
			return nil, ctx.Err()
		case <-tick.C:
			if _, err := os.Stat(pidFile); err == nil {
				return &pastaProc{cmd: cmd, exited: exited}, nil
			}
		}
	}
}

// pastaProc is a job's running pasta; exited yields its Wait's result.
type pastaProc struct {
	cmd    *exec.Cmd
	exited chan error
}

// stop kills pasta and waits for it to be gone.
func (p *pastaProc) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
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
