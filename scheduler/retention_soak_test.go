package scheduler

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jobrun/jobrun/artifacts"
)

func fileSize(t testing.TB, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// dirBytes is the size of the files under dir.
func dirBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed by the sweeper meanwhile
		}
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		n += fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRetentionSoak runs a server with a retention of a second while a
// fake agent completes hundreds of runs, each with a log and an
// artifact, and samples the database and the artifacts directory: once
// the retention has turned over, they stop growing. The bound on live
// runs comes from the retention and the pace runs are created at (at
// most one per pace), not from how fast this machine is.
func TestRetentionSoak(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		const (
			total    = 400
			branches = 3
			keep     = 2
			age      = time.Second
			every    = 200 * time.Millisecond
			pace     = 20 * time.Millisecond // at most 50 runs a second
			art      = 16 << 10
			sampleAt = 25
		)
		// Runs alive at any moment: the last of each branch, those
		// created within the retention and the pass interval, and those
		// a pass in progress has not reached, twice over for a slow pass.
		liveBound := int64(branches*keep + 2*int((age+2*every)/pace))
		if total < 2*liveBound {
			t.Fatalf("the test is too short to show anything: %d runs, up to %d alive", total, liveBound)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		st := open()
		artDir := filepath.Join(t.TempDir(), "artifacts")
		arts, err := artifacts.NewLocal(artDir)
		if err != nil {
			t.Fatal(err)
		}
		base, _ := startServer(t, st, func(c *Config) {
			c.Artifacts = arts
			c.Retention = Retention{Age: age, KeepRuns: keep, Every: every}
		}, true)
		c, reg := register(t, base, "soak", 1)
		a := fakeAgent{c, reg}
		dbPath := ""
		if st.d.name == "sqlite" {
			var seq int
			var name string
			if err := st.db.QueryRow(`PRAGMA database_list`).Scan(&seq, &name, &dbPath); err != nil {
				t.Fatal(err)
			}
		}

		dbSize := func() (db, wal int64) {
			if dbPath != "" {
				return fileSize(t, dbPath), fileSize(t, dbPath+"-wal")
			}
			return count(t, st.db, `SELECT pg_database_size(current_database())`), 0
		}
		// What the database takes before the first run: the growth is
		// measured from there (an empty PostgreSQL database is 8 MB).
		empty, _ := dbSize()
		type sample struct{ runs, logRows, artBytes, dbBytes, walBytes int64 }
		var samples []sample
		tick := time.NewTicker(pace)
		defer tick.Stop()
		for i := range total {
			select {
			case <-tick.C:
			case <-ctx.Done():
				t.Fatalf("soak did not finish in time: %d of %d runs", i, total)
			}
			a.complete(t, base, "org/app", []string{"main", "dev", "feat"}[i%branches], art, time.Time{})
			if (i+1)%sampleAt == 0 {
				s := sample{
					runs:     count(t, st.db, `SELECT COUNT(*) FROM runs`),
					logRows:  count(t, st.db, `SELECT COUNT(*) FROM log_chunks`),
					artBytes: dirBytes(t, artDir),
				}
				s.dbBytes, s.walBytes = dbSize()
				samples = append(samples, s)
				t.Logf("after %3d runs: %3d runs and %3d log chunks in the database, artifacts %7d bytes, database %8d bytes (%+7d over empty; write-ahead log %7d)",
					i+1, s.runs, s.logRows, s.artBytes, s.dbBytes, s.dbBytes-empty, s.walBytes)
			}
		}
		swept := count(t, st.db, `SELECT COUNT(*) FROM swept_runs`)
		if swept < total-liveBound {
			t.Fatalf("%d of %d runs swept, want at least %d", swept, total, total-liveBound)
		}
		// Every file of an artifact attempt (the file and its manifest)
		// is under art + 4 KiB.
		artBound := liveBound * (art + 4<<10)
		third := len(samples) / 3
		var steadyDB int64
		for _, s := range samples[:third] {
			steadyDB = max(steadyDB, s.dbBytes)
		}
		for i, s := range samples {
			if s.runs > liveBound || s.logRows > liveBound {
				t.Errorf("sample %d: %d runs and %d log chunks kept; retention bounds them by %d", i, s.runs, s.logRows, liveBound)
			}
			if s.artBytes > artBound {
				t.Errorf("sample %d: artifacts take %d bytes; retention bounds them by %d", i, s.artBytes, artBound)
			}
			// In the last third, the database has grown from empty no
			// more than twice its growth in the first third (tombstones,
			// some 50 bytes a run, and index pages grow a little).
			if i >= 2*third && s.dbBytes-empty > (steadyDB-empty)*2 {
				t.Errorf("sample %d: database %d bytes, %d over empty; at most %d over in the first third", i, s.dbBytes, s.dbBytes-empty, steadyDB-empty)
			}
		}
		// Positive control: what was written is far more than the bound.
		if written := int64(total) * art; written < 2*artBound {
			t.Fatalf("wrote %d artifact bytes, not enough beyond the bound %d to show the sweep", written, artBound)
		}
	})
}
