package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/internal/idmap"
)

// jobWorkspace is what a job's workspace gives the runner: the directory
// mounted at /workspace, and its removal.
type jobWorkspace interface {
	Path() string
	Remove() error
}

// rangeWorkspace is the copy-on-write workspace of a job in a user
// namespace: an overlay over an idmapped view of the source, its upper
// owned by the job's range, so the job's root owns the source's files as
// host root does and its writes stay in the upper (mounted without idmap:
// overlayfs cannot be idmapped itself).
//
// Interim (uns-core): workspace.Overlay takes the job's user namespace in
// the workspace package's own change (with its crash clean-up and copy
// fallback); this stands in for it until then.
type rangeWorkspace struct{ o *idmap.Overlay }

func (w *rangeWorkspace) Path() string  { return w.o.Rootfs() }
func (w *rangeWorkspace) Remove() error { return w.o.Remove() }

// workspaceFor makes j's workspace: a plain directory (a clean export,
// mounted idmapped in a user namespace) or a copy-on-write view of its
// source. It reports whether the container mounts it idmapped.
func (r *Runner) workspaceFor(ctx context.Context, j *Job, ns *sandbox.Namespaces) (jobWorkspace, bool, error) {
	if ns == nil || j.Clean {
		ws, err := r.workspace(ctx, j)
		if err != nil {
			return nil, false, err
		}
		return ws, true, nil
	}
	base := filepath.Join(r.WorkDir, "workspaces-userns")
	if err := os.MkdirAll(base, 0o711); err != nil {
		return nil, false, fmt.Errorf("workspace: %w", err)
	}
	o, err := idmap.NewOverlay(ns.Userns(), []string{j.Source}, filepath.Join(base, j.instance))
	if err != nil {
		return nil, false, fmt.Errorf("workspace: %w", err)
	}
	return &rangeWorkspace{o}, false, nil
}
