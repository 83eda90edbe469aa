package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/jobrun/jobrun/agent/image"
	"github.com/jobrun/jobrun/internal/rootless"
)

// Own-uid mode (issue #18): a user without subordinate ranges still runs
// jobs whose images need no id but root's (busybox, a static binary).
// jobrun maps only the user's own uid and gid, to 0, which an
// unprivileged process may write for a namespace it made (the gid map
// after "deny" in its setgroups file), so no newuidmap is needed.
//
// It is chosen by itself, when /etc/subuid or /etc/subgid gives the user
// no range, and says so on every run, before anything else: a warning
// with the usermod line that maps the rest. It never downgrades in
// silence, nor in any other case (ranges present but newuidmap missing
// or failing is an error, as before): a job either runs as it would with
// ranges, or is refused before it starts (an image with a file owned by
// another id, at unpack or at the job's start), or meets the one thing
// the warning names, a switch to another user (su, setuid) or a chown
// to one failing in the job (EPERM, EINVAL). Steps keep the invoking
// user's supplementary groups, which nobody in the namespace may change
// (the launcher skips setgroups there): the job holds no more than the
// user who runs it. A flag would only add a step to the same outcome: without
// ranges there is no other way to run at all.

// rootlessOwnUIDEnv tells the child it runs in own-uid mode; its value is
// the usermod line that maps the other ids.
const rootlessOwnUIDEnv = "JOBRUN_ROOTLESS_OWNUID"

// ownUIDWarning is the warning a user without subordinate ranges gets
// once per run.
func ownUIDWarning(name string) string {
	return fmt.Sprintf("jobrun: warning: no subordinate ids for %s in /etc/subuid and /etc/subgid: jobs run with only your uid mapped "+
		"(root in the job); images owning files of other users will be refused, and a job cannot switch to another user or chown a file to one; "+
		"to map them, an administrator runs:\n  %s", name, subIDsLine(name))
}

// writeOwnMaps maps id 0 of process pid's new user namespace to uid and
// gid, and nothing else.
func writeOwnMaps(pid, uid, gid int) error {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	for _, f := range []struct{ name, data string }{
		{"uid_map", rootless.OwnIDMap(uid)},
		{"setgroups", "deny"},
		{"gid_map", rootless.OwnIDMap(gid)},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.data), 0); err != nil {
			return fmt.Errorf("running jobs without root, only your uid mapped: write %s: %w", f.name, err)
		}
	}
	return nil
}

// rootlessMappedIDs sets the image store's mapped-id limit in the child:
// every layer file and image user must be owned by an id the user's
// namespace maps, else the image is refused, naming the file and how to
// get more ids.
func rootlessMappedIDs(o *image.Options) error {
	if !rootlessChild() {
		return nil
	}
	n, err := rootless.MappedIDs()
	if err != nil {
		return fmt.Errorf("running jobs without root: %w", err)
	}
	o.MappedIDs = n
	if line := os.Getenv(rootlessOwnUIDEnv); line != "" && n == 1 {
		o.MappedFix = "jobrun runs with only your uid mapped (you have no subordinate ids), so images owning files of other users are refused; to map them, an administrator runs: " + line
	} else {
		o.MappedFix = fmt.Sprintf("your user namespace maps ids 0-%d only (your uid and your subordinate ids): rebuild the image with its files owned by ids below %d, or ask for more subordinate ids", n-1, n)
	}
	return nil
}

// rootlessWhy is why jobs get no user namespace of their own without
// root, as the run's first line says it.
func rootlessWhy() string {
	if n, err := rootless.MappedIDs(); err == nil && n == 1 {
		return "jobrun runs without root: every job runs in your user namespace, with only your uid mapped (you are its root)"
	}
	return rootlessUsernsWhy
}
