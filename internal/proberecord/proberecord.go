// Package proberecord keeps a probe's record of a pass in a state dir, so
// that a later process where the same things hold (the kernel, the file
// system, a limit) returns at once instead of probing again. Shared by
// internal/mount (the rootless overlay probe) and internal/idmap (the
// user namespace probe); it imports nothing of the project.
package proberecord

import "os"

// Once runs probe unless the file rec holds what key returns: a pass
// then writes that key to rec (through rec+".tmp" and a rename), so the
// next call with the same key returns nil at once. Anything else (no
// record, another key, a record that cannot be read, a key that cannot
// be made) probes; a key that cannot be made is not recorded. Writing
// the record is best effort: without it the next call probes again.
func Once(rec string, key func() (string, error), probe func() error) error {
	k, kerr := key()
	if kerr == nil {
		if b, err := os.ReadFile(rec); err == nil && string(b) == k {
			return nil
		}
	}
	if err := probe(); err != nil {
		return err
	}
	if kerr != nil {
		return nil
	}
	tmp := rec + ".tmp"
	if err := os.WriteFile(tmp, []byte(k), 0o644); err == nil {
		if os.Rename(tmp, rec) != nil {
			os.Remove(tmp)
		}
	}
	return nil
}
