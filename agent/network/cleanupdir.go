package network

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/internal/owner"
)

// CleanupStateDir removes the networks that killed processes left in the
// state dir o.StateDir, for a process that does not serve it: a state dir
// a killed process had open may never be opened again, and its jobs'
// namespaces stay bind-mounted until something unmounts them. Jobs whose
// lock is free lose what Cleanup removes of its own state dir's (rules,
// link, namespace, lease, directory); jobs of live processes are not
// touched, so this is safe while another process opens or uses that state
// dir. Of o it reads StateDir, Dir, Bridge, Rootless and Log only (the
// subnet and lists matter to making networks, not to removing them); it
// makes nothing in the state dir (no STATE/network) and leaves the
// host-wide part (other leases, the bridge, the table) to the caller's
// own Manager's Cleanup.
func CleanupStateDir(ctx context.Context, o Options) error {
	if !filepath.IsAbs(o.StateDir) {
		return fmt.Errorf("network cleanup: state dir %q: not an absolute path", o.StateDir)
	}
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	if o.Bridge == "" {
		o.Bridge = DefaultBridge
	}
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	m := &Manager{o: o, jobs: filepath.Join(o.StateDir, "network"), table: tableFor(o.Bridge)}
	if _, err := os.Stat(m.jobs); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	m.tag = owner.Tag(m.jobs)
	if o.Rootless {
		return m.cleanupRootless(ctx)
	}
	return m.cleanupJobs(ctx)
}
