package sandbox

// Stop stops every process in the container except its init, as a
// cancelled step's: SIGTERM, up to the Spec's StopGrace for them to exit,
// then SIGKILL with the cgroup frozen (Kill).
func (c *Container) Stop() error {
	return c.Kill(c.spec.StopGrace)
}
