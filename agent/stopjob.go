package agent

import (
	"fmt"

	"github.com/jobrun/jobrun/agent/sandbox"
)

// stopForArtifacts stops every process of the job's container before its
// artifacts are read: a step may have left some behind (`cmd &`, a daemon,
// a setsid'd child) that still write the workspace. They get SIGTERM and
// the Spec's StopGrace to finish their writes, then SIGKILL; the container
// is then destroyed, so nothing can write after. The services run in
// containers of their own and stay up until teardown, whose Destroy of
// this container does nothing more.
func stopForArtifacts(c *sandbox.Container) error {
	// Destroy kills whatever Stop could not, so its error alone decides.
	_ = c.Stop()
	if err := c.Destroy(); err != nil {
		return fmt.Errorf("stop the job's processes before collecting artifacts: %w", err)
	}
	return nil
}
