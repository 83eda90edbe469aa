package image

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/jobrun/jobrun/internal/atomicfile"
)

// layerIDs is the highest uid or gid a layer's files are owned by, and one
// file owned by it: what a job's user namespace, which maps ids 0 to
// size-1 only, needs to know of the layer. It is recorded when the layer
// is unpacked, as ids/HEX.json by DiffID (a DiffID names the layer's
// content, so its record never goes stale).
type layerIDs struct {
	// Max is the highest uid or gid of a file.
	Max uint64 `json:"max"`
	// Path is a file (absolute in the image) owned by uid or gid Max,
	// and UID, GID its owner. Empty when the layer has no entries.
	Path string `json:"path,omitempty"`
	UID  uint64 `json:"uid"`
	GID  uint64 `json:"gid"`
}

// add counts a file at name (relative to the layer's root) owned by
// uid:gid.
func (l *layerIDs) add(name string, uid, gid uint64) {
	if m := max(uid, gid); m > l.Max || l.Path == "" {
		l.Max, l.Path, l.UID, l.GID = m, path.Clean("/"+name), uid, gid
	}
}

// ownedBy reports whether a tar entry has an owner of its own: a hard
// link has none (its target's is counted), nor has an overlayfs whiteout
// (a 0:0 device node umoci makes, hidden in a snapshot).
func ownedBy(h *tar.Header) bool {
	return h.Typeflag != tar.TypeLink && !strings.HasPrefix(path.Base(h.Name), ".wh.") && h.Uid >= 0 && h.Gid >= 0
}

// mappedEntry refuses, before it is unpacked, a tar entry owned by an id
// this process's user namespace does not map (Options.MappedIDs), which
// the unpack could only fail to chown with EINVAL: the error names the
// file, its owner and what to do.
func (s *Store) mappedEntry(h *tar.Header) error {
	n := uint64(s.opts.MappedIDs)
	if n == 0 || !ownedBy(h) || (uint64(h.Uid) < n && uint64(h.Gid) < n) {
		return nil
	}
	return fmt.Errorf("%s is owned by %d:%d; %s", path.Clean("/"+h.Name), h.Uid, h.Gid, s.mappedFix())
}

// addHeader counts a tar entry. A hard link has no owner of its own (its
// target's is counted), nor has an overlayfs whiteout (a 0:0 device node
// umoci makes, hidden in a snapshot).
func (l *layerIDs) addHeader(h *tar.Header) {
	if !ownedBy(h) {
		return
	}
	l.add(h.Name, uint64(h.Uid), uint64(h.Gid))
}

// idsPath is where the record of the layer diffID, or of the flattened
// directory "flat-HEX", is kept.
func (s *Store) idsPath(key string) string {
	return filepath.Join(s.dir, "ids", strings.TrimPrefix(key, "sha256:")+".json")
}

// putIDs records the ids of the layer or flattened directory key.
func (s *Store) putIDs(key string, ids layerIDs) error {
	b, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.tmpDir(), s.idsPath(key), b); err != nil {
		return fmt.Errorf("record the ids of %s: %w", short(key), err)
	}
	return nil
}

// ids returns the record of key, scanning dir and recording what it finds
// when there is none: layers unpacked before the records were kept.
func (s *Store) ids(key, dir string) (layerIDs, error) {
	var ids layerIDs
	b, err := os.ReadFile(s.idsPath(key))
	if err == nil {
		if err = json.Unmarshal(b, &ids); err == nil {
			return ids, nil
		}
		s.log.Warn("unreadable id record: scanning the layer again", "layer", key, "error", err)
	} else if !errors.Is(err, os.ErrNotExist) {
		return ids, fmt.Errorf("ids of %s: %w", short(key), err)
	}
	if ids, err = scanIDs(dir); err != nil {
		return ids, fmt.Errorf("ids of %s: %w", short(key), err)
	}
	return ids, s.putIDs(key, ids)
}

// scanIDs reads the owners of the files of an unpacked tree.
func scanIDs(root string) (layerIDs, error) {
	var ids layerIDs
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no owner", p)
		}
		if fi.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0 {
			return nil // an overlayfs whiteout
		}
		rel, _ := filepath.Rel(root, p)
		ids.add(rel, uint64(st.Uid), uint64(st.Gid))
		return nil
	})
	return ids, err
}

// CheckIDs refuses an image that has a file owned by a uid or gid of size
// or more, which a job's user namespace mapping ids 0 to size-1 cannot
// map, so that a job fails before it starts instead of with EOVERFLOW in
// its middle. The error names the image, the layer, one such file and
// its owner, and what to do. Each layer's ids are recorded when it is
// unpacked; a layer unpacked before that is scanned once.
func (s *Store) CheckIDs(img *Image, size uint32) error {
	limit := uint64(size)
	return s.checkIDs(img, limit, fmt.Sprintf("a job's user namespace maps ids 0-%d only: rebuild the image with its files owned by ids below %d "+
		"(chown them in its Dockerfile), or run jobs without user namespaces (userns = \"off\" in the agent config, jobrun local --userns off)",
		limit-1, limit))
}

// CheckMapped is CheckIDs for the ids this process's own user namespace
// maps (Options.MappedIDs: jobrun without root), with Options.MappedFix
// as what to do. Without a limit it checks nothing.
func (s *Store) CheckMapped(img *Image) error {
	if s.opts.MappedIDs == 0 {
		return nil
	}
	return s.checkIDs(img, uint64(s.opts.MappedIDs), s.mappedFix())
}

// mappedFix is what to do about a file the namespace cannot map.
func (s *Store) mappedFix() string {
	if s.opts.MappedFix != "" {
		return s.opts.MappedFix
	}
	return fmt.Sprintf("this user namespace maps ids 0-%d only", s.opts.MappedIDs-1)
}

// checkIDs is CheckIDs for ids below limit, saying fix.
func (s *Store) checkIDs(img *Image, limit uint64, fix string) error {
	if err := checkUser(img.Config.User, limit); err != nil {
		return fmt.Errorf("image %s: %w; %s", img.Ref, err, fix)
	}
	for i, l := range img.Layers {
		ids, ok := s.recordedIDs(l.DiffID)
		switch {
		case ok:
		case img.Flat != "":
			// The layers of a flattened image are not unpacked on
			// their own: check the merged tree.
			return s.checkFlat(img, limit, fix)
		default:
			var err error
			if ids, err = s.ids(l.DiffID, s.layerPath(l.DiffID)); err != nil {
				return fmt.Errorf("image %s: layer %s: %w", img.Ref, short(l.Digest), err)
			}
		}
		if ids.Max >= limit {
			return fmt.Errorf("image %s: layer %s (%d of %d) has %s owned by %d:%d; %s",
				img.Ref, l.Digest, i+1, len(img.Layers), ids.Path, ids.UID, ids.GID, fix)
		}
	}
	return nil
}

// recordedIDs is the record of the layer diffID, if there is one.
func (s *Store) recordedIDs(diffID string) (layerIDs, bool) {
	if v, ok := s.idsSeen.Load(diffID); ok {
		return v.(layerIDs), true
	}
	var ids layerIDs
	b, err := os.ReadFile(s.idsPath(diffID))
	if err != nil || json.Unmarshal(b, &ids) != nil {
		return ids, false
	}
	s.idsSeen.Store(diffID, ids)
	return ids, true
}

// checkFlat checks the merged directory of a flattened image whose layers
// have no records.
func (s *Store) checkFlat(img *Image, limit uint64, fix string) error {
	ids, err := s.ids("flat-"+img.Flat, s.flatPath(img.Flat))
	if err != nil {
		return fmt.Errorf("image %s: %w", img.Ref, err)
	}
	if ids.Max >= limit {
		return fmt.Errorf("image %s: one of its %d layers (merged in %s) has %s owned by %d:%d; %s",
			img.Ref, len(img.Layers), s.flatPath(img.Flat), ids.Path, ids.UID, ids.GID, fix)
	}
	return nil
}

// checkUser refuses an image config's user ("uid", "uid:gid", names
// resolved in the image are not checked here) with an id of limit or more.
func checkUser(user string, limit uint64) error {
	u, g, _ := strings.Cut(user, ":")
	for _, id := range []string{u, g} {
		if n, err := strconv.ParseUint(id, 10, 32); err == nil && n >= limit {
			return fmt.Errorf("its config runs as user %q", user)
		}
	}
	return nil
}
