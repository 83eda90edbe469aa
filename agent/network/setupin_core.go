package network

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jobrun/jobrun/internal/lockfile"
	"golang.org/x/sys/unix"
)

// SetupIn is Setup in the existing, empty network namespace at netns (an
// nsfs bind the caller owns and removes: a job's, owned by its user
// namespace). The Manager keeps a bind of it where Setup keeps its own,
// so Teardown and Cleanup treat both alike; neither removes netns.
//
// Interim (uns-core): the minimal form the runner needs until the network
// package's own SetupIn lands; it sets no sysctl in the namespace.
func (m *Manager) SetupIn(ctx context.Context, id, netns string) (_ *Net, err error) {
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("network %q: want 1 to 63 letters, digits or \"-\"", id)
	}
	dir := filepath.Join(m.jobs, id)
	n := &Net{m: m, id: id, Path: filepath.Join(dir, "netns"), Gateway: m.gw, Comment: RuleComment(m.tag, id)}
	if n.lock, err = lockfile.TryAcquire(filepath.Join(dir, "lock")); errors.Is(err, lockfile.ErrLocked) {
		return nil, fmt.Errorf("network %s: in use: %w", id, err)
	} else if err != nil {
		return nil, fmt.Errorf("network %s: %w", id, err)
	}
	defer func() {
		if err != nil {
			if terr := n.Teardown(); terr != nil {
				m.o.Log.Error("clean up after failed network setup", "id", id, "error", terr)
			}
			err = fmt.Errorf("network %s: %w", id, err)
		}
	}()
	if n.ResolvConf, err = resolvConf(m.o.ResolvConf); err != nil {
		return nil, err
	}
	if n.Addr, err = m.lease(ctx, id, filepath.Join(dir, "lock")); err != nil {
		return nil, err
	}
	if err := os.WriteFile(n.Path, nil, 0o444); err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", n.Path, err)
	}
	if err := unix.Mount(netns, n.Path, "", unix.MS_BIND, ""); err != nil {
		os.Remove(n.Path)
		return nil, fmt.Errorf("network namespace %s: bind %s: %w", n.Path, netns, err)
	}
	if err := m.link(n); err != nil {
		return nil, err
	}
	if err := addJobRules(m.table, n.Comment, n.Addr, m.o.Deny); err != nil {
		return nil, err
	}
	return n, nil
}
