package agent

import (
	"github.com/jobrun/jobrun/agent/idrange"
	"github.com/jobrun/jobrun/agent/image"
)

// checkImageIDs refuses, before a job starts, an image (the job's or a
// service's) with files owned by ids its user namespace cannot map;
// without user namespaces of their own, jobs run in this process's, whose
// mapped ids the store checks (all of them as the host's root; without
// root, what the user's namespace maps, see image.Options.MappedIDs).
func (r *Runner) checkImageIDs(img *image.Image) error {
	if r.IDs == nil {
		return r.Images.CheckMapped(img)
	}
	return r.Images.CheckIDs(img, idrange.Size)
}
