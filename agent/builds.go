package agent

import (
	"fmt"
	"strings"

	"github.com/jobrun/jobrun/jobs"
)

// checkBuildsImages refuses, before anything starts, a job that builds
// images (builds_images = true) on a runner without user namespaces: the
// builder's CAP_SYS_ADMIN would then be the host's (sandbox.Spec.Builder).
func (r *Runner) checkBuildsImages(j *jobs.Job) error {
	if j.BuildsImages && r.IDs == nil {
		return fmt.Errorf("job %q: builds_images = true needs jobs in user namespaces, and this runner has none (userns = \"off\", or rootless): "+
			"run it as root with userns on (the default: a pool agent, or sudo jobrun local), or drop builds_images", j.Name)
	}
	return nil
}

// builderCommands are the image builders a failed step's script may name
// for the job log to point at builds_images.
var builderCommands = []string{"buildah", "podman", "buildctl", "buildkitd"}

// buildsImagesHint is the notice for a failed step s of a job without
// builds_images whose script runs an image builder: those fail in a
// default sandbox (no mounts, no nested user namespaces), and the step's
// own error ("unshare(CLONE_NEWUSER): Operation not permitted") does not
// say which option is missing. Empty when it does not apply.
func buildsImagesHint(j *jobs.Job, s jobs.Step, sr StepResult) string {
	if j.BuildsImages || sr.Status != Failed {
		return ""
	}
	for _, c := range builderCommands {
		if strings.Contains(s.Run, c) {
			return fmt.Sprintf("step %s runs %s, and this job cannot build images: image builders need mounts and nested user namespaces, "+
				"which a job gets with builds_images = true", s.Name, c)
		}
	}
	return ""
}
