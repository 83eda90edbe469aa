// Package atomicfile replaces small files (records, metadata) so that a
// crash leaves the old content or the new, never a torn file.
package atomicfile

import "os"

// Write writes b to path through a synced temp file made in tmpDir (on the
// same filesystem as path) and a rename. On error the temp file is gone.
func Write(tmpDir, path string, b []byte) error {
	f, err := os.CreateTemp(tmpDir, "write-")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
