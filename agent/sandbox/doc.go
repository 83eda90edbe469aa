// Package sandbox runs a job's steps in one fresh container through runc's
// libcontainer, from an OCI runtime spec converted by specconv.
//
// libcontainer sets each container up in a re-executed copy of the process
// that asks; so that copy is the small jobrun-starter, not the program
// using this package (see internal/starter), which needs no hook in its
// main. Programs that use it install jobrun-starter and jobrun-launcher
// next to themselves or on PATH (scripts/helpers.sh builds both); test
// binaries build them in TestMain (testenv.InstallHelpers).
//
// # Shape
//
// A Runtime (New) owns a state dir. Start creates a container for one job
// from a Spec: PID 1 is jobrun's static launcher (a small C program,
// agent/sandbox/launcher, installed as jobrun-launcher next to the jobrun
// binary or on PATH),
// bound read-only at /dev/.jobrun/init, which lives until Destroy, reaps
// orphans, and dies with the agent (and with it the pid namespace). Each
// step is a child of the launcher, started by Exec over a socket the
// launcher inherits (package internal/wire), so it inherits the
// container's namespaces, cgroup, seccomp filter, no_new_privs and
// capability bounding set instead of being set up again by libcontainer;
// Shell gives the image's shell command line (bash -eo pipefail if the
// image has /bin/bash, else sh -c). Output is passed on
// raw, as it comes, per stream; line framing and timestamps are the
// caller's (agent's) business. Stats reads CPU time, peak memory and pids
// through libcontainer's cgroup manager, so cgroup v1 and v2 both work.
// Destroy kills and removes everything; Cleanup removes what a killed
// process left, for containers whose flock is free.
//
// # Isolation
//
// New mount, pid, ipc, uts (hostname = id), cgroup and, unless Network is
// "host", network namespaces. With Spec.UserNS the container joins the
// job's user namespace (made by Runtime.NewNamespaces, with the network
// namespace it owns for a bridge job, and held by nsfs binds in the run
// dir) and makes the others inside it: root is the first id of the job's
// range on the host, the rootfs is one built for the range on idmapped
// layers (image.Store.SnapshotFor), Mount.IDMap and Spec.WorkspaceIDMap
// bind plain host directories idmapped, and no_new_privs is off (set-uid
// binaries reach the range's root, no further), with the seccomp filter
// loaded by libcontainer. Without it root is host root and no_new_privs
// is on. The rootfs is pivot_root'ed; the workspace
// is bound at /workspace and caches where asked, all bind mounts nosuid
// and nodev; /proc, a minimal /dev, /dev/shm (size-limited), /dev/mqueue,
// read-only /sys and /sys/fs/cgroup, and per-container /etc/hosts,
// /etc/hostname and /etc/resolv.conf. Docker's default capabilities minus
// CAP_NET_RAW (none at all for a non-root step user), no_new_privs
// (without a user namespace),
// Docker's masked and read-only paths, Docker's default seccomp profile
// (native architecture only unless Spec.Compat32; compiled by libcontainer
// once per Runtime and loaded by the launcher, see seccomp.go), and the
// devices cgroup
// allow-list without mknod of block devices. The state dir is never
// mounted into a container.
//
// # Limits and death
//
// cpus become a CFS quota, memory a limit with swap at the same value,
// pids a pids limit. Exit says how a step ended in words: "exit code 7",
// "killed by signal 9 (killed)", "out of memory (limit 2 GiB)", "timed out
// after 20m", "cancelled", "pids limit reached (limit 64)". On timeout or
// cancel every process of the container except init gets SIGTERM, then
// after Spec.StopGrace SIGKILL with the cgroup frozen, so setsid'd and
// double-forked processes die too.
//
// # Run dir
//
// Containers are started by jobrun-starter, a helper process the Runtime
// runs (package internal/starter), and their runtime state is kept in
// memory, in the run dir of the state dir (RunDir):
//
//	<run>/runc/<id>/        libcontainer's state
//	<run>/containers/<id>/  lock, hosts, hostname, resolv.conf
//	<run>/ns/<id>/          a job's user (and network) namespace binds
//
// Cgroups are named jobrun-<id>: /jobrun-<id> in every hierarchy on
// cgroup v1 and where the agent is in cgroup v2's root; beside the
// agent's own leaf in its delegated cgroup v2 subtree (systemd's
// Delegate=yes) otherwise (cgroupbase.go).
package sandbox
