package jobs

import (
	"path"
	"strings"
)

// builderStorage are where the image builders keep their storage by
// default: buildah and podman as root (/var/lib/containers) and rootless
// (~/.local/share/containers), BuildKit likewise. A path holds builder
// storage when it is one of these or lies under one; the home-relative
// ones match under any home directory.
var builderStorage = struct{ abs, home []string }{
	abs:  []string{"/var/lib/containers", "/var/lib/buildkit"},
	home: []string{".local/share/containers", ".local/share/buildkit"},
}

// isBuilderStorage reports whether the container path p is, or lies
// under, a builder's default storage.
func isBuilderStorage(p string) bool {
	p = path.Clean(p)
	for _, s := range builderStorage.abs {
		if p == s || strings.HasPrefix(p, s+"/") {
			return true
		}
	}
	for _, s := range builderStorage.home {
		if strings.HasSuffix(p, "/"+s) || strings.Contains(p, "/"+s+"/") {
			return true
		}
	}
	return false
}

// checkBuilderCaches refuses a private cache at a builder's storage path
// in a job that builds images: a private cache is an overlay of its own
// over the volume, the builder's overlay layers cannot sit on it (an
// overlay's upper dir on an overlay), and the outer overlay would read
// the builder's whiteouts (0:0 character devices) as deletions of its
// own. A shared or locked cache is a plain directory and works.
func (p *parser) checkBuilderCaches(j *Job) {
	if !j.BuildsImages {
		return
	}
	for _, c := range j.Caches {
		if c.Sharing == Private && isBuilderStorage(c.Path) {
			p.errorf(c.DeclRange, "Private cache for builder storage",
				"Job %q builds images, and cache %q at %s is where the builder keeps its storage; a private cache cannot hold it: "+
					"it is an overlay, an overlay's layers cannot sit on it, and it would read the builder's whiteouts as deletions of its own. "+
					"Use sharing = \"shared\" (the default) or \"locked\".", j.Name, c.Name, c.Path)
		}
	}
}
