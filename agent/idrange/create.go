package idrange

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/jobrun/jobrun/internal/atomicfile"
)

// lookupUser returns the uid of name in the passwd file at path, or "" if
// there is none.
func lookupUser(path, name string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read users: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 3 && fields[0] == name {
			return fields[2], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read users %s: %w", path, err)
	}
	return "", nil
}

// ensure creates the user if missing and adds an entry to each file for
// the ranges o.Slots needs beyond those it holds. It runs under the
// host-wide lock and checks every entry before it changes anything.
//
// useradd's own lock on the files (shadow's FILE.lock) is not taken: an
// admin's useradd adding sub-ids at the same moment as an agent's first
// start could lose one of the two entries.
func ensure(ctx context.Context, o Options) error {
	passwd := filepath.Join(o.Root, "etc/passwd")
	uid, err := lookupUser(passwd, o.User)
	if err != nil {
		return err
	}
	type file struct {
		path string
		all  []entry
		have int
	}
	var files []file
	for _, name := range []string{"etc/subuid", "etc/subgid"} {
		path := filepath.Join(o.Root, name)
		all, err := readSubIDs(path)
		if err != nil {
			return err
		}
		own, _, err := mine(all, o.User, uid)
		if err != nil {
			return err
		}
		files = append(files, file{path, all, len(blocks(own))})
	}
	if uid == "" {
		if err := addUser(ctx, o.Root, o.User); err != nil {
			return err
		}
	}
	for _, f := range files {
		if f.have >= o.Slots {
			continue
		}
		count := uint64(o.Slots-f.have) * Size
		start, err := nextFree(f.all, count)
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
