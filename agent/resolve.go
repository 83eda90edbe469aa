package agent

import (
	"context"

	"github.com/jobrun/jobrun/agent/image"
)

// resolveImage finds the image ref (the job's or a service's) names, for
// job j whose workspace is ws: a relative oci-layout: path of a checked-out
// job is taken from the checkout (see workspaceLayout), the job's pull
// policy wins over the Runner's, and the job's registry login is offered
// beside the agent's.
func (r *Runner) resolveImage(ctx context.Context, j *Job, ref, ws string) (*image.Image, error) {
	if j.FileDir != "" {
		var err error
		if ref, err = workspaceLayout(ref, ws, j.FileDir); err != nil {
			return nil, err
		}
	}
	p := image.Policy(j.Pull)
	if p == "" {
		p = r.PullPolicy
	}
	return r.Images.ResolvePolicy(ctx, ref, j.BaseDir, p)
}
