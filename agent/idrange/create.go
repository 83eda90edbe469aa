package idrange

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jobrun/jobrun/internal/atomicfile"
)

// account is a user of etc/passwd or a group of etc/group.
type account struct {
	name string
	id   uint64
}

// accounts reads the names and ids of a passwd or group file. A missing
// file lists none if optional.
func accounts(path string, optional bool) ([]account, error) {
	f, err := os.Open(path)
	if optional && errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read accounts: %w", err)
	}
	defer f.Close()
	var out []account
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 3 {
			continue
		}
		if id, err := strconv.ParseUint(fields[2], 10, 32); err == nil {
			out = append(out, account{fields[0], id})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read accounts %s: %w", path, err)
	}
	return out, nil
}

// lookup is the id of name as a string, or "" if there is none.
func lookup(accts []account, name string) string {
	for _, a := range accts {
		if a.name == name {
			return strconv.FormatUint(a.id, 10)
		}
	}
	return ""
}

// subIDs is what one subordinate id file holds and who the host's own
// ids of that kind belong to.
type subIDs struct {
	path string
	all  []entry
	own  []entry
	// hosts are the host's own ids of this kind (users or groups).
	hosts []account
}

// load reads the subuid and subgid files of o and checks the user's
// entries in them against each other, other users' entries, and the
// host's own users and groups. uid is the user's uid, "" if none yet.
func load(o Options) (uid string, files [2]subIDs, err error) {
	passwd, group := filepath.Join(o.Root, "etc/passwd"), filepath.Join(o.Root, "etc/group")
	users, err := accounts(passwd, false)
	if err != nil {
		return "", files, err
	}
	groups, err := accounts(group, true)
	if err != nil {
		return "", files, err
	}
	uid = lookup(users, o.User)
	for i, c := range []struct {
		name, kind, accts string
		hosts             []account
	}{{"etc/subuid", "user", passwd, users}, {"etc/subgid", "group", group, groups}} {
		f := subIDs{path: filepath.Join(o.Root, c.name), hosts: c.hosts}
		if f.all, err = readSubIDs(f.path); err != nil {
			return "", files, err
		}
		if f.own, _, err = mine(f.all, o.User, uid); err != nil {
			return "", files, err
		}
		if err := holdsNone(f.own, c.hosts, c.kind, c.accts); err != nil {
			return "", files, err
		}
		files[i] = f
	}
	return uid, files, nil
}

// holdsNone refuses entries that hold the id of one of the host's own
// users or groups: a job would own that account's files.
func holdsNone(own []entry, hosts []account, kind, path string) error {
	for _, e := range own {
		for _, a := range hosts {
			if a.id >= e.start && a.id < e.end() {
				return fmt.Errorf("%s: %s holds id %d of %s %s (%s): a job would own its files", e.where(), e, a.id, kind, a.name, path)
			}
		}
	}
	return nil
}

// ensure creates the user if missing and adds an entry to each file for
// the ranges o.Slots needs beyond those it holds. It runs under the
// host-wide lock and checks every entry before it changes anything.
//
// useradd's own lock on the files (shadow's FILE.lock) is not taken: an
// admin's useradd adding sub-ids at the same moment as an agent's first
// start could lose one of the two entries.
func ensure(ctx context.Context, o Options) error {
	uid, files, err := load(o)
	if err != nil {
		return err
	}
	if uid == "" {
		if err := addUser(ctx, o.Root, o.User); err != nil {
			return err
		}
	}
	for _, f := range files {
		have := len(blocks(f.own))
		if have >= o.Slots {
			continue
		}
		count := uint64(o.Slots-have) * Size
		start, err := nextFree(f.all, f.hosts, count)
		if err != nil {
			return fmt.Errorf("%s: %w", f.path, err)
		}
		old, err := os.ReadFile(f.path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := atomicfile.Write(filepath.Dir(f.path), f.path, appendEntry(old, o.User, start, count)); err != nil {
			return fmt.Errorf("add %d ids to %s: %w", count, f.path, err)
		}
		// A fresh temp file is 0600; the files are world-readable.
		if err := os.Chmod(f.path, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// addUser creates name as a system user without home or login shell, as
// Docker creates dockremap.
func addUser(ctx context.Context, root, name string) error {
	cmd := exec.CommandContext(ctx, "useradd", "--prefix", root, "--system", "--no-create-home",
		"--shell", "/usr/sbin/nologin", "--user-group", name)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("create user %s: useradd: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
