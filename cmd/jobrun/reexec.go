package main

import "github.com/jobrun/jobrun/agent/sandbox"

// reexecInit runs the container setup when libcontainer re-executes this
// binary as "jobrun init", and returns at once otherwise.
func reexecInit() { sandbox.Init() }
