package agent

import (
	"github.com/jobrun/jobrun/agent/idrange"
	"github.com/jobrun/jobrun/agent/image"
)

// checkImageIDs refuses, before a job starts, an image (the job's or a
// service's) with files owned by ids its user namespace cannot map;
// without user namespaces every id is the host's own and nothing is
// checked.
func (r *Runner) checkImageIDs(img *image.Image) error {
	if r.IDs == nil {
		return nil
	}
	return r.Images.CheckIDs(img, idrange.Size)
}
