package sandbox

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/jobrun/jobrun/agent/sandbox/internal/wire"
	"github.com/jobrun/jobrun/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// filterStore keeps compiled seccomp filters in the state dir
// (<state>/seccomp, root's, 0700), so that a process of its own per run
// (`jobrun local`) finds them compiled: in memory alone, its first
// containers always start before the background compile is done (it
// takes 30-45 ms, a container's setup less) and have libcontainer compile
// the filter again in their setup. A file is named by the profile and the
// compiling starter binary (path, size, mtime, inode: a new build of the
// helpers compiles anew), and holds the load flags and the program as the
// starter produced them; one that does not read back whole, or that
// someone else could have written (not this user's, or group or world
// writable, it or its dir), is ignored (and compiled again).
type filterStore struct {
	dir     string
	starter string // the starter's identity, mixed into every name
}

// newFilterStore returns the store under stateDir for the starter at path;
// nil if it cannot be used (then filters are compiled per process).
func newFilterStore(stateDir, starter string) *filterStore {
	var st unix.Stat_t
	if err := unix.Stat(starter, &st); err != nil {
		return nil
	}
	dir := filepath.Join(stateDir, "seccomp")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil
	}
	// The filters confine jobs: only a dir of this user's that no one
	// else may write is trusted (fail closed: no store).
	var dst unix.Stat_t
	if err := unix.Lstat(dir, &dst); err != nil || dst.Mode&unix.S_IFMT != unix.S_IFDIR ||
		int(dst.Uid) != os.Geteuid() || dst.Mode&0o022 != 0 {
		return nil
	}
	return &filterStore{dir: dir, starter: fmt.Sprintf("%s %d %d %d %d", starter, st.Size, st.Mtim.Nano(), st.Dev, st.Ino)}
}

func (fs *filterStore) path(cfgJSON []byte) string {
	h := sha256.New()
	h.Write([]byte(fs.starter))
	h.Write([]byte{0})
	h.Write(cfgJSON)
	return filepath.Join(fs.dir, hex.EncodeToString(h.Sum(nil))+".bpf")
}

// The file: "jrsf", the flags (4 bytes, little endian), the program's
// length (4 bytes), the program; then a sha256 of all that.
const filterMagic = "jrsf"

// loadFor returns the stored filter of cfgJSON, nil if there is none
// whole (or no store).
func (fs *filterStore) loadFor(cfgJSON []byte) *wire.Filter {
	if fs == nil {
		return nil
	}
	fd, err := unix.Open(fs.path(cfgJSON), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), fs.path(cfgJSON))
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG ||
		int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 || st.Size > 1<<20 {
		return nil
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil
	}
	filter, err := decodeFilter(b)
	if err != nil {
		return nil
	}
	return filter
}

// save stores f as the filter of cfgJSON.
func (fs *filterStore) save(cfgJSON []byte, f *wire.Filter) error {
	b := []byte(filterMagic)
	b = binary.LittleEndian.AppendUint32(b, f.Flags)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Program)))
	b = append(b, f.Program...)
	sum := sha256.Sum256(b)
	b = append(b, sum[:]...)
	return atomicfile.Write(fs.dir, fs.path(cfgJSON), b)
}

func decodeFilter(b []byte) (*wire.Filter, error) {
	const head = len(filterMagic) + 8
	if len(b) < head+sha256.Size || string(b[:len(filterMagic)]) != filterMagic {
		return nil, errors.New("not a stored filter")
	}
	body := b[:len(b)-sha256.Size]
	if sum := sha256.Sum256(body); string(sum[:]) != string(b[len(body):]) {
		return nil, errors.New("stored filter: bad checksum")
	}
	n := binary.LittleEndian.Uint32(b[len(filterMagic)+4:])
	if int(n) != len(body)-head || n == 0 || n%8 != 0 {
		return nil, errors.New("stored filter: bad length")
	}
	return &wire.Filter{Flags: binary.LittleEndian.Uint32(b[len(filterMagic):]), Program: append([]byte(nil), body[head:]...)}, nil
}
