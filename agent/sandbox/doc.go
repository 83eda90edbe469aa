// Package sandbox runs a job's steps in a fresh container through runc's
// libcontainer, in-process: new mount, pid, ipc, uts, cgroup and (optionally)
// network namespaces, cgroup limits, Docker's default security profile, and
// teardown that leaves nothing behind.
//
// Programs that use this package must call Init first thing in main (and
// test binaries in TestMain): see Init.
package sandbox
