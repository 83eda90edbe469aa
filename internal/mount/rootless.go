package mount

import "github.com/jobrun/jobrun/internal/rootless"

// userXattr is the overlay option for a jobrun without root (in a user
// namespace of its own, issue #18): overlayfs then keeps and reads its
// metadata (opaque dirs, redirects) in user.overlay.* xattrs, as the
// image store unpacked the layers, because trusted.* ones are the host
// root's only. The kernel allows overlayfs in a user namespace from 5.11.
func userXattr() string {
	if rootless.InUserNS() {
		return ",userxattr"
	}
	return ""
}
