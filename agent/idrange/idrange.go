// Package idrange hands out the host id ranges that jobs' user namespaces
// map their ids 0-65535 onto, so that no two live jobs share a host id.
//
// The ranges come from the /etc/subuid and /etc/subgid entries of the
// jobrun user, the convention Docker's userns-remap (its dockremap user)
// follows: Open creates the user and entries when they are missing, sized
// for the slots asked for, and refuses entries that overlap another user's.
// A slot is one Size-id block of the uid entries paired with one of the gid
// entries. Allocate holds a block with a flock(2) lock on a file named by
// its first host id, in a directory every jobrun process on the host
// shares (/run/jobrun/idrange), so a block is held by one live job at a
// time, and the kernel drops the lock of a holder that dies.
//
// `jobrun agent` and `jobrun local` open the pool at start (sized for their
// job slots) and hand it to the Runner as agent.Runner.IDs.
package idrange

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/lockfile"
)

const (
	// Size is how many ids a job's range holds: container ids 0-65535.
	Size = 65536
	// DefaultUser owns the entries ranges come from.
	DefaultUser = "jobrun"
	// DefaultLockDir holds the host-wide locks; on tmpfs like the other
	// locks under /run/jobrun, so a reboot leaves none.
	DefaultLockDir = "/run/jobrun/idrange"
	// firstID is where new entries start at the lowest, as useradd's
	// SUB_UID_MIN does: below it are the host's own users.
	firstID = 100000
)

// ErrExhausted reports that live jobs hold every range.
var ErrExhausted = errors.New("every id range is held by a live job")

// Options say where the entries are and how many ranges they must hold.
type Options struct {
	// Root is the directory whose etc/passwd, etc/subuid and etc/subgid
	// are read and written (useradd --prefix). Default "/".
	Root string
	// User owns the entries. Default DefaultUser.
	User string
	// Slots is how many ranges the entries must hold at least: missing
	// ones are added as one more entry in each file. 0 adds none.
	Slots int
	// LockDir holds the locks. Default DefaultLockDir.
	LockDir string
}

// Pool is the ranges of the user's entries.
type Pool struct {
	lockDir    string
	uids, gids []uint32
	subuid     string
}

// Range is where a job's ids land on the host: container uid n is host uid
// UID+n and gid n is GID+n, for n below Size.
type Range struct {
	UID, GID uint32
}

// Mapping is the range as an id mapping of container ids 0 to Size-1.
func (r Range) Mapping() idmap.Mapping {
	return idmap.Mapping{UID: r.UID, GID: r.GID, Size: Size}
}

// Lease is a held range; Release hands it back. Keep it reachable until
// then: a lost Lease's lock files are closed, and the range freed, by the
// garbage collector.
type Lease struct {
	Range
	uid, gid *lockfile.Lock
}

func (o *Options) defaults() {
	if o.Root == "" {
		o.Root = "/"
	}
	if o.User == "" {
		o.User = DefaultUser
	}
	if o.LockDir == "" {
		o.LockDir = DefaultLockDir
	}
}

// Open reads the user's entries, first creating the user (useradd) and
// adding entries for at least o.Slots ranges when they are missing, under
// a host-wide lock. It refuses entries that overlap another user's or
// hold the id of one of the host's users (etc/passwd) or groups
// (etc/group), root's included, naming the file and line.
func Open(ctx context.Context, o Options) (*Pool, error) {
	o.defaults()
	if o.Slots < 0 {
		return nil, fmt.Errorf("id ranges: %d slots", o.Slots)
	}
	l, err := lockfile.Acquire(ctx, filepath.Join(o.LockDir, "lock"))
	if err != nil {
		return nil, fmt.Errorf("id ranges: %w", err)
	}
	defer l.Release()
	if err := ensure(ctx, o); err != nil {
		return nil, fmt.Errorf("id ranges of %s: %w", o.User, err)
	}
	p, err := read(o)
	if err != nil {
		return nil, fmt.Errorf("id ranges of %s: %w", o.User, err)
	}
	if len(p.uids) < o.Slots {
		return nil, fmt.Errorf("id ranges of %s: %d wanted, the entries hold %d", o.User, o.Slots, len(p.uids))
	}
	return p, nil
}

// read builds the pool from the files as they are.
func read(o Options) (*Pool, error) {
	uid, files, err := load(o)
	if err != nil {
		return nil, err
	}
	if uid == "" {
		return nil, fmt.Errorf("no user %s in %s", o.User, filepath.Join(o.Root, "etc/passwd"))
	}
	p := &Pool{lockDir: o.LockDir, subuid: files[0].path, uids: blocks(files[0].own), gids: blocks(files[1].own)}
	n := min(len(p.uids), len(p.gids))
	p.uids, p.gids = p.uids[:n], p.gids[:n]
	return p, nil
}

// Len is how many ranges the pool holds.
func (p *Pool) Len() int { return len(p.uids) }

// Allocate holds the first range no live job holds, until Release. It
// returns an error wrapping ErrExhausted when live jobs hold them all.
func (p *Pool) Allocate() (*Lease, error) {
	if len(p.uids) == 0 {
		return nil, fmt.Errorf("allocate id range: %s has no range of %d ids: %w", p.subuid, Size, ErrExhausted)
	}
	for i := range p.uids {
		u, err := p.lock("uid", p.uids[i])
		if errors.Is(err, lockfile.ErrLocked) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("allocate id range: %w", err)
		}
		g, err := p.lock("gid", p.gids[i])
		if errors.Is(err, lockfile.ErrLocked) {
			u.Release() // another process pairs this gid block otherwise
			continue
		}
		if err != nil {
			u.Release()
			return nil, fmt.Errorf("allocate id range: %w", err)
		}
		return &Lease{Range: Range{UID: p.uids[i], GID: p.gids[i]}, uid: u, gid: g}, nil
	}
	return nil, fmt.Errorf("allocate id range: live jobs hold all %d ranges of %s: %w", len(p.uids), p.subuid, ErrExhausted)
}

// Wait is Allocate that, while live jobs hold every range, polls until
// one is released or ctx is done; then its error wraps both ErrExhausted
// and ctx's error.
func (p *Pool) Wait(ctx context.Context) (*Lease, error) {
	delay := time.Millisecond
	for {
		l, err := p.Allocate()
		if !errors.Is(err, ErrExhausted) || len(p.uids) == 0 {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (waited: %w)", err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// lock takes the lock of the block starting at host id start. Locks are
// named by host id, not slot number, so that processes holding different
// reads of the files still never share an id.
func (p *Pool) lock(kind string, start uint32) (*lockfile.Lock, error) {
	return lockfile.TryAcquire(filepath.Join(p.lockDir, kind+"-"+strconv.FormatUint(uint64(start), 10)+".lock"))
}

// Release hands the range back. The lock files stay (see
// lockfile.Release). Calling it again does nothing.
func (l *Lease) Release() error {
	if l == nil {
		return nil
	}
	err := errors.Join(l.gid.Release(), l.uid.Release())
	l.uid, l.gid = nil, nil
	return err
}
