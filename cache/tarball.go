package cache

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
)

// archive writes the tree at src as a tar stream: directories, regular
// files and symlinks (as links, never followed). Files are opened through
// an os.Root with O_NOFOLLOW, so a job swapping a file for a symlink while
// the archive is written cannot make it read outside the volume.
func archive(ctx context.Context, src string, w io.Writer) error {
	root, err := os.OpenRoot(src)
	if err != nil {
		return err
	}
	defer root.Close()
	tw := tar.NewWriter(w)
	buf := make([]byte, 1<<20)
	err = fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if name == "." {
			return nil
		}
		return archiveEntry(root, tw, name, d, buf)
	})
	if err != nil {
		return fmt.Errorf("archive %s: %w", src, err)
	}
	return tw.Close()
}

// archiveEntry writes one entry; buf is the copy buffer for file data
// (large, so a big file takes few read calls).
func archiveEntry(root *os.Root, tw *tar.Writer, name string, d fs.DirEntry, buf []byte) error {
	fi, err := d.Info()
	if err != nil {
		return err
	}
	switch {
	case fi.IsDir():
		return tw.WriteHeader(header(fi, tar.TypeDir, name+"/", ""))
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := root.Readlink(name)
		if err != nil {
			return err
		}
		return tw.WriteHeader(header(fi, tar.TypeSymlink, name, target))
	case fi.Mode().IsRegular():
		f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil // replaced while we walked
		}
		if err := tw.WriteHeader(header(fi, tar.TypeReg, name, "")); err != nil {
			return err
		}
		n, err := io.CopyBuffer(tw, io.LimitReader(f, fi.Size()), buf)
		if err == nil && n < fi.Size() {
			err = io.EOF // shrank while archived, as io.CopyN reports it
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	return nil // sockets, fifos and devices have no place in a cache
}

func header(fi fs.FileInfo, typ byte, name, link string) *tar.Header {
	h := &tar.Header{
		Typeflag: typ, Name: name, Linkname: link,
		Mode: int64(unixMode(fi.Mode())), ModTime: fi.ModTime(),
		Format: tar.FormatPAX,
	}
	if typ == tar.TypeReg {
		h.Size = fi.Size()
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		h.Uid, h.Gid = int(st.Uid), int(st.Gid)
	}
	return h
}

// unixMode converts permission and special bits to their Unix values.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= syscall.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		u |= syscall.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		u |= syscall.S_ISVTX
	}
	return u
}

// extract unpacks a tar stream into dst, which must be empty. Every write
// goes through an os.Root, which refuses names and symlinks that lead out
// of dst; names with ".." or a leading slash are refused up front with a
// clear error. It returns the number of entries written.
func extract(ctx context.Context, r io.Reader, dst string) (int, error) {
	root, err := os.OpenRoot(dst)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	tail := &zeroTail{r: r}
	tr := tar.NewReader(tail)
	buf := make([]byte, 1<<20)
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if tail.zeros < 2*512 {
				// archive/tar takes a stream that stops between two
				// entries for a whole one; only the end-of-archive
				// marker, two zero blocks, says the archive is complete.
				return n, fmt.Errorf("archive cut short after %d entries: no end-of-archive marker", n)
			}
			return n, nil
		}
		if err != nil {
			return n, err
		}
		name, err := entryName(h.Name)
		if err != nil {
			return n, err
		}
		if name == "." {
			continue
		}
		if err := extractEntry(root, tr, h, name, buf); err != nil {
			return n, fmt.Errorf("extract %s: %w", h.Name, err)
		}
		n++
	}
}

func entryName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("archive entry %q: absolute path", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("archive entry %q: has a parent (..) component", name)
		}
	}
	return path.Clean(name), nil
}

// extractEntry writes one entry; buf is the copy buffer for file data
// (large, so a big file takes few write calls).
func extractEntry(root *os.Root, tr *tar.Reader, h *tar.Header, name string, buf []byte) error {
	mode := fs.FileMode(h.Mode).Perm()
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := root.MkdirAll(name, mode); err != nil {
			return err
		}
		return chown(root, name, h)
	case tar.TypeSymlink:
		if err := root.Symlink(h.Linkname, name); err != nil {
			return err
		}
		return chown(root, name, h)
	case tar.TypeReg:
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
		if err != nil {
			return err
		}
		// Read a megabyte at a time (hiding File.ReadFrom, which would
		// copy through 32 KiB), but write it in small pieces: see
		// pieceWriter.
		_, err = io.CopyBuffer(pieceWriter{f}, tr, buf)
		if err == nil {
			err = f.Chmod(fs.FileMode(h.Mode) & (fs.ModePerm))
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := chown(root, name, h); err != nil {
			return err
		}
		return root.Chtimes(name, h.ModTime, h.ModTime)
	}
	return nil // other types are never written by archive
}

// chown keeps owners when running as root; elsewhere files belong to us.
func chown(root *os.Root, name string, h *tar.Header) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return root.Lchown(name, h.Uid, h.Gid)
}

// zeroTail counts the zero bytes at the end of what has been read through
// it so far, looking back only from the end of each read (cheap: file
// data rarely ends in zeros), so extract can tell a complete tar stream,
// which ends with two zero blocks, from one cut between entries.
type zeroTail struct {
	r     io.Reader
	zeros int
}

func (z *zeroTail) Read(p []byte) (int, error) {
	n, err := z.r.Read(p)
	k := 0
	for k < n && p[n-1-k] == 0 {
		k++
	}
	if k == n {
		z.zeros += n
	} else {
		z.zeros = k
	}
	return n, err
}

// writePiece is the largest write extract makes to a file.
const writePiece = 32 << 10

// pieceWriter writes to a file writePiece bytes at a time. ext4 sizes its
// page-cache folios by the write: a 1 MiB write asks for a 1 MiB folio,
// which comes from splitting the free lists' largest blocks, the very
// ones a VM's free page reporting hands back to the host; the first touch
// of each page then faults in the host. On the bench's VM that cost 2-3 s
// of system time per GiB restored, against 0.3 s when written 32 KiB at a
// time (bench/cacheremote/README.md).
type pieceWriter struct{ f *os.File }

func (w pieceWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := w.f.Write(p[n:min(len(p), n+writePiece)])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
