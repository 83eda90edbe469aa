package image

import (
	"encoding/json"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"syscall"

	"github.com/jobrun/jobrun/internal/atomicfile"
)

// The store's entries (unpacked layers, flattened roots, blobs, id
// records) are named by their content and never change once renamed into
// place, so what one uses on disk, measured once, stays true while the
// entry is there. Prune measures every entry an image uses (a layer of a
// large image: thousands of files, tens of ms to walk) at every budget
// sweep, which `jobrun local` runs twice a run; it remembers the sizes in
// sizesFile, each with the entry's inode and change time, and walks an
// entry again only when those differ (the entry was removed and made
// anew, or changed by hand).
const sizesFile = "sizes.json"

// sizeRecord is one entry's remembered disk use.
type sizeRecord struct {
	Ino   uint64 `json:"ino"`
	Ctime int64  `json:"ctime"` // ns
	Size  int64  `json:"size"`
}

// diskUsage measures the store's paths (bytes allocated, hard links counted
// once per tree) for one Prune, from the remembered sizes where they hold.
type diskUsage struct {
	dir   string                // the store's
	got   map[string]int64      // measured in this Prune, by path
	known map[string]sizeRecord // read from sizesFile, by path under dir
	now   map[string]sizeRecord // what to remember: known, updated by this Prune
}

// newDiskUsage reads the store's remembered sizes; a missing or unreadable
// file means none.
func (s *Store) newDiskUsage() *diskUsage {
	du := &diskUsage{dir: s.dir, got: map[string]int64{}, known: map[string]sizeRecord{}, now: map[string]sizeRecord{}}
	if b, err := os.ReadFile(filepath.Join(s.dir, sizesFile)); err == nil {
		if err := json.Unmarshal(b, &du.known); err != nil {
			du.known = map[string]sizeRecord{}
		}
	}
	du.now = maps.Clone(du.known)
	return du
}

// of is the disk use of the store path p.
func (du *diskUsage) of(p string) int64 {
	if n, ok := du.got[p]; ok {
		return n
	}
	rel, err := filepath.Rel(du.dir, p)
	if err != nil {
		rel = ""
	}
	var st syscall.Stat_t
	statErr := syscall.Lstat(p, &st)
	if statErr == nil && rel != "" {
		if r, ok := du.known[rel]; ok && r.Ino == st.Ino && r.Ctime == st.Ctim.Nano() {
			du.got[p], du.now[rel] = r.Size, r
			return r.Size
		}
	}
	n := walkUsage(p)
	du.got[p] = n
	if statErr == nil && rel != "" {
		du.now[rel] = sizeRecord{Ino: st.Ino, Ctime: st.Ctim.Nano(), Size: n}
	}
	return n
}

// removed forgets p, which Prune removed.
func (du *diskUsage) removed(p string) {
	if rel, err := filepath.Rel(du.dir, p); err == nil {
		delete(du.now, rel)
	}
}

// saveDiskUsage remembers the sizes of du, if they differ from what was
// remembered. Only Prune writes the file, under the
// store's gc lock.
func (s *Store) saveDiskUsage(du *diskUsage) error {
	if maps.Equal(du.now, du.known) {
		return nil
	}
	b, err := json.Marshal(du.now)
	if err != nil {
		return err
	}
	return atomicfile.Write(s.tmpDir(), filepath.Join(s.dir, sizesFile), b)
}

// walkUsage is the bytes on disk under p, hard links counted once.
func walkUsage(p string) int64 {
	var n int64
	seen := map[uint64]bool{}
	filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			n += fi.Size()
			return nil
		}
		if st.Nlink > 1 && !d.IsDir() {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		n += st.Blocks * 512
		return nil
	})
	return n
}
