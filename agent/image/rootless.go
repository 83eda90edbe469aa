package image

import (
	"github.com/opencontainers/umoci/oci/layer"

	"github.com/jobrun/jobrun/internal/rootless"
)

// layerFormat is how layers are unpacked for overlayfs: whiteouts as 0/0
// character devices and opaque directories marked with a
// trusted.overlay.opaque xattr, or, when jobrun runs without root (in a
// user namespace of its own, issue #18), with user.overlay.opaque, which
// the overlay reads when mounted with "userxattr" (internal/mount): only
// the host's root may set trusted.* xattrs. Ownership is kept as in the
// layer: the unpack runs as the namespace's root, and the namespace maps
// every id a layer uses (0 to the user, the rest to their subordinate
// ids), as rootless podman's store does. The two formats never meet:
// without root the store is the user's own ($XDG_DATA_HOME/jobrun).
func layerFormat() layer.OverlayfsRootfs {
	return layer.OverlayfsRootfs{UserXattr: rootless.InUserNS()}
}
