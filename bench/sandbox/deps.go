package main

// libcontainer starts each container by re-executing the running binary,
// which runs every package's init before it gets to sandbox.Init. A
// container started by jobrun pays for all of jobrun's packages there
// (about 290, several ms), so this benchmark links the same ones, not
// just package sandbox: what it measures is what a jobrun job pays. (The
// list is cmd/jobrun's imports of this module.)
import (
	_ "github.com/jobrun/jobrun/agent"
	_ "github.com/jobrun/jobrun/agent/config"
	_ "github.com/jobrun/jobrun/agent/image"
	_ "github.com/jobrun/jobrun/agent/network"
	_ "github.com/jobrun/jobrun/agent/workspace"
	_ "github.com/jobrun/jobrun/api"
	_ "github.com/jobrun/jobrun/artifacts"
	_ "github.com/jobrun/jobrun/cache"
	_ "github.com/jobrun/jobrun/internal/atomicfile"
	_ "github.com/jobrun/jobrun/internal/units"
	_ "github.com/jobrun/jobrun/jobs"
	_ "github.com/jobrun/jobrun/local"
	_ "github.com/jobrun/jobrun/scheduler"
)
