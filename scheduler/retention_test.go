package scheduler

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
	"github.com/jobrun/jobrun/internal/miniotest"
)

// fakeAgent completes jobs through the API as an agent does: a log, a
// step, an artifact (when its size is not 0) and the result.
type fakeAgent struct {
	c   *api.Client
	reg *api.Registration
}

// finishedRun is a run a fakeAgent completed.
type finishedRun struct {
	run int64
	at  api.Attempt
	log string
}

// complete creates a run of repo and branch through the API and completes
// its job; the artifact expires at expires (zero: never).
func (f fakeAgent) complete(t testing.TB, base, repo, branch string, art int, expires time.Time) finishedRun {
	t.Helper()
	ctx := context.Background()
	r, err := admin(base).CreateRun(ctx, api.NewRun{Repo: repo, Branch: branch, Source: oneJob})
	if err != nil {
		t.Fatal(err)
	}
	l, err := f.c.Lease(ctx, f.reg.ID, 5*time.Second)
	if err != nil || l == nil {
		t.Fatalf("lease the job of run %d: %v %v", r.ID, l, err)
	}
	if l.Run != fmt.Sprint(r.ID) {
		t.Fatalf("leased a job of run %s, want %d", l.Run, r.ID)
	}
	logText := fmt.Sprintf("output of run %d on %s\n", r.ID, branch)
	if _, err := f.c.AppendLog(ctx, l.Attempt, 0, []byte(logText)); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Step(ctx, l.Attempt, api.Step{Index: 0, Name: "b", Status: api.Succeeded, Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if art > 0 {
		content := strings.Repeat(fmt.Sprintf("%d ", r.ID), art)[:art]
		if err := f.c.PutArtifact(ctx, l.Attempt, "dist/out.txt", strings.NewReader(content), int64(len(content))); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(content))
		m := artifacts.Manifest{Created: time.Now(), Expires: expires,
			Files: []artifacts.ManifestFile{{Path: "dist/out.txt", Size: int64(len(content)), Mode: 0o644, SHA256: hex.EncodeToString(sum[:])}}}
		if err := f.c.CommitArtifacts(ctx, l.Attempt, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.c.Finish(ctx, l.Attempt, api.Result{Status: api.Succeeded}); err != nil {
		t.Fatal(err)
	}
	return finishedRun{run: r.ID, at: l.Attempt, log: logText}
}

// artifactStores runs f with a maker of local stores and one of MinIO
// stores.
func artifactStores(t *testing.T, f func(t *testing.T, mk func(t *testing.T) artifacts.Store)) {
	t.Run("local", func(t *testing.T) {
		f(t, func(t *testing.T) artifacts.Store {
			st, err := artifacts.NewLocal(filepath.Join(t.TempDir(), "artifacts"))
			if err != nil {
				t.Fatal(err)
			}
			return st
		})
	})
	t.Run("minio", func(t *testing.T) {
		f(t, func(t *testing.T) artifacts.Store {
			st, err := artifacts.NewS3(context.Background(), miniotest.Config(t), artifacts.S3Options{})
			if err != nil {
				t.Fatal(err)
			}
			return st
		})
	})
}

// gpuJob waits for an agent with the gpu label.
const gpuJob = `
job "train" {
  image = "busybox"
  agent = ["gpu"]
  step "t" { run = "true" }
}
`

// getStatus is the status and body of an authenticated GET.
func getStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRetentionSweepsOldRunsKeepsRecentAndLastN(t *testing.T) {
	artifactStores(t, func(t *testing.T, mk func(t *testing.T) artifacts.Store) {
		eachStore(t, func(t *testing.T, open func() *SQL) {
			ctx := context.Background()
			arts := mk(t)
			const age = time.Hour
			st := open()
			base, srv := startServer(t, st, func(c *Config) {
				c.Artifacts = arts
				c.Retention = Retention{Age: age, KeepRuns: 1}
				c.PublicRead = true // the UI pages below, without a session
			}, false)
			c, reg := register(t, base, "a", 1)
			a := fakeAgent{c, reg}
			never := time.Time{}

			// Old runs: four on main, one on dev (its last), two on feat
			// (one old and finished, then the newest), and one on feat
			// still queued.
			var old []finishedRun
			for range 4 {
				old = append(old, a.complete(t, base, "org/app", "main", 64, never))
			}
			dev := a.complete(t, base, "org/app", "dev", 64, never)
			featOld := a.complete(t, base, "org/app", "feat", 64, never)
			featLast := a.complete(t, base, "org/app", "feat", 64, never)
			queued, err := admin(base).CreateRun(ctx, api.NewRun{Repo: "org/app", Branch: "wip", Source: gpuJob})
			if err != nil {
				t.Fatal(err)
			}
			otherRepo := a.complete(t, base, "org/lib", "main", 64, never)
			old = append(old, featOld)
			time.Sleep(5 * time.Millisecond) // the cutoff falls between the old runs and the new
			mid := time.Now()
			time.Sleep(5 * time.Millisecond)
			now := mid.Add(age)
			// Recent runs on main: within retention though not the last;
			// one's artifact has expired by now, the others' have not.
			recentExpired := a.complete(t, base, "org/app", "main", 64, now.Add(-time.Minute))
			recent := a.complete(t, base, "org/app", "main", 64, now.Add(time.Hour))
			last := a.complete(t, base, "org/app", "main", 64, never)
			// A newer run on wip (another job: it does not supersede the
			// first), so the first is not the last of its branch.
			if _, err := admin(base).CreateRun(ctx, api.NewRun{Repo: "org/app", Branch: "wip", Source: oneJob}); err != nil {
				t.Fatal(err)
			}

			// Cron ticks: one older than the retention and the catch-up
			// window (1 h), one recent.
			oldTick, newTick := now.Add(-age-time.Hour-time.Minute), now.Add(-time.Minute)
			for _, tick := range []time.Time{oldTick, newTick} {
				if _, err := st.ClaimTick(ctx, "org/app", "0 * * * * @ main", tick, tick); err != nil {
					t.Fatal(err)
				}
			}

			res, err := srv.sweep(ctx, now)
			if err != nil {
				t.Fatal(err)
			}
			if n := count(t, st.db, `SELECT COUNT(*) FROM cron_fires WHERE tick = $1`, ms(oldTick)); n != 0 {
				t.Fatalf("a cron tick older than retention and the catch-up window is kept")
			}
			if n := count(t, st.db, `SELECT COUNT(*) FROM cron_fires WHERE tick = $1`, ms(newTick)); n != 1 {
				t.Fatalf("a recent cron tick was pruned")
			}
			if res.Runs != len(old) || res.Artifacts != 1 {
				t.Fatalf("sweep removed %d runs and %d expired artifacts, want %d and 1", res.Runs, res.Artifacts, len(old))
			}

			// The swept runs: 410 with a message, everywhere, and nothing
			// left in the store or the database.
			for _, d := range old {
				if _, err := admin(base).Run(ctx, d.run); !api.IsStatus(err, http.StatusGone) || !strings.Contains(err.Error(), "retention") {
					t.Fatalf("run %d after the sweep: %v, want 410 saying retention removed it", d.run, err)
				}
				if _, err := admin(base).Job(ctx, d.at.Job); !api.IsStatus(err, http.StatusGone) {
					t.Fatalf("job %d after the sweep: %v, want 410", d.at.Job, err)
				}
				if _, err := admin(base).Log(ctx, d.at.Job, false); !api.IsStatus(err, http.StatusGone) {
					t.Fatalf("log of job %d after the sweep: %v, want 410", d.at.Job, err)
				}
				var m artifacts.Manifest
				if err := admin(base).Manifest(ctx, d.at, &m); !api.IsStatus(err, http.StatusGone) {
					t.Fatalf("artifacts of job %d after the sweep: %v, want 410", d.at.Job, err)
				}
				for _, page := range []string{fmt.Sprintf("/runs/%d", d.run), fmt.Sprintf("/jobs/%d", d.at.Job)} {
					if code, body := getStatus(t, base+page); code != http.StatusGone || !strings.Contains(body, "retention") {
						t.Fatalf("GET %s after the sweep: %d, want 410 saying retention removed it", page, code)
					}
				}
				ref := artifacts.Ref{Repo: "org/app", Run: fmt.Sprint(d.run), Job: "build", Attempt: d.at.Attempt}
				if _, err := arts.Manifest(ctx, ref); !errors.Is(err, artifacts.ErrNotFound) {
					t.Fatalf("artifacts of swept run %d still stored: %v", d.run, err)
				}
				for _, table := range []string{"log_chunks", "steps", "artifact_files"} {
					if n := count(t, st.db, `SELECT COUNT(*) FROM `+table+` WHERE job_id = $1`, d.at.Job); n != 0 {
						t.Fatalf("%d rows of swept job %d left in %s", n, d.at.Job, table)
					}
				}
			}
			if n := count(t, st.db, `SELECT COUNT(*) FROM commit_statuses WHERE run_id = $1`, old[0].run); n != 0 {
				t.Fatalf("commit status of a swept run left")
			}
			// An id that never existed is 404, not 410.
			if _, err := admin(base).Run(ctx, 1_000_000); !api.IsStatus(err, http.StatusNotFound) {
				t.Fatalf("run that never existed: %v, want 404", err)
			}
			if code, _ := getStatus(t, base+"/runs/1000000"); code != http.StatusNotFound {
				t.Fatalf("page of a run that never existed: %d, want 404", code)
			}

			// What stays: recent runs, the last of each branch, the
			// unfinished run, with their logs and unexpired artifacts.
			for _, d := range []finishedRun{dev, featLast, otherRepo, recentExpired, recent, last} {
				if _, err := admin(base).Run(ctx, d.run); err != nil {
					t.Fatalf("run %d within retention or the last of its branch: %v", d.run, err)
				}
				rc, err := admin(base).Log(ctx, d.at.Job, false)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(rc)
				rc.Close()
				if string(b) != d.log {
					t.Fatalf("log of kept job %d = %q, want %q", d.at.Job, b, d.log)
				}
				var m artifacts.Manifest
				err = admin(base).Manifest(ctx, d.at, &m)
				switch {
				case d == recentExpired:
					if !api.IsStatus(err, http.StatusNotFound) {
						t.Fatalf("expired artifact of kept run %d: %v, want 404", d.run, err)
					}
				case err != nil:
					t.Fatalf("unexpired artifact of kept run %d: %v", d.run, err)
				}
			}
			if r, err := admin(base).Run(ctx, queued.ID); err != nil || r.Jobs[0].Status != "queued" {
				t.Fatalf("old queued run: %v %v, want it kept", r, err)
			}

			// A second pass finds nothing more.
			if res, err := srv.sweep(ctx, now); err != nil || res.Runs != 0 {
				t.Fatalf("second sweep: %+v %v, want nothing", res, err)
			}
		})
	})
}

func count(t testing.TB, db *sql.DB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRetentionPassClaimedOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		ctx := context.Background()
		a := open()
		b := a
		if a.d.name == "postgres" {
			b = open() // a second server on the same database
		}
		now := time.Now()
		wonA, err := a.ClaimSweep(ctx, "retention", "a", now, now.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		wonB, err := b.ClaimSweep(ctx, "retention", "b", now, now.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if !wonA || wonB {
			t.Fatalf("two servers claiming one pass: a %v, b %v; want a only", wonA, wonB)
		}
		// The next period is the other's to take.
		later := now.Add(time.Minute)
		if won, err := b.ClaimSweep(ctx, "retention", "b", later, later.Add(time.Minute)); err != nil || !won {
			t.Fatalf("claim of the next period: %v %v", won, err)
		}
	})
}

// TestRetentionGivesSQLiteSpaceBack fills a database with logs, sweeps
// them, and checks the file shrank: a new file (incremental vacuum) and
// one made before migration 006 without auto_vacuum (VACUUM once).
func TestRetentionGivesSQLiteSpaceBack(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy=%v", legacy), func(t *testing.T) {
			ctx := context.Background()
			p := filepath.Join(t.TempDir(), "jobrun.db")
			if legacy {
				db, err := sql.Open("sqlite", "file:"+p+"?_pragma=auto_vacuum(NONE)")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := db.Exec(`CREATE TABLE old (x INTEGER)`); err != nil {
					t.Fatal(err)
				}
				db.Close()
			}
			st, err := OpenSQLite(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			if mode := count(t, st.db, `PRAGMA auto_vacuum`); legacy != (mode == 0) || !legacy && mode != 2 {
				t.Fatalf("auto_vacuum = %d (legacy %v)", mode, legacy)
			}
			base, srv := startServer(t, st, func(c *Config) { c.Retention = Retention{Age: time.Hour, KeepRuns: 1} }, false)
			c, reg := register(t, base, "a", 1)
			big := strings.Repeat("a line of build output that fills the database\n", 20000) // ~1 MB
			var last api.Attempt
			for i := range 8 {
				r, err := admin(base).CreateRun(ctx, api.NewRun{Repo: "org/app", Branch: "main", Source: oneJob})
				if err != nil {
					t.Fatal(err)
				}
				l, err := c.Lease(ctx, reg.ID, 5*time.Second)
				if err != nil || l == nil || l.Run != fmt.Sprint(r.ID) {
					t.Fatalf("lease %d: %v %v", i, l, err)
				}
				for off := 0; off < len(big); off += 256 << 10 {
					chunk := big[off:min(off+256<<10, len(big))]
					if _, err := c.AppendLog(ctx, l.Attempt, int64(off), []byte(chunk)); err != nil {
						t.Fatal(err)
					}
				}
				if err := c.Finish(ctx, l.Attempt, api.Result{Status: api.Succeeded}); err != nil {
					t.Fatal(err)
				}
				last = l.Attempt
			}
			if _, err := st.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
				t.Fatal(err)
			}
			before := dbBytes(t, p)
			res, err := srv.sweep(ctx, time.Now().Add(2*time.Hour))
			if err != nil || res.Runs != 7 {
				t.Fatalf("sweep: %+v %v, want 7 runs", res, err)
			}
			after := dbBytes(t, p)
			t.Logf("database %d bytes before the sweep, %d after", before, after)
			if after*3 > before {
				t.Fatalf("database %d bytes before sweeping 7 of 8 runs' logs, %d after: space not given back", before, after)
			}
			if mode := count(t, st.db, `PRAGMA auto_vacuum`); mode != 2 {
				t.Fatalf("auto_vacuum = %d after the sweep, want incremental", mode)
			}
			// Positive control: the kept run's log is whole.
			if n, err := st.LogSize(ctx, last); err != nil || n != int64(len(big)) {
				t.Fatalf("kept log: %d bytes, %v; want %d", n, err, len(big))
			}
		})
	}
}

// dbBytes is the size of a SQLite database with its write-ahead log.
func dbBytes(t testing.TB, p string) int64 {
	t.Helper()
	var n int64
	for _, f := range []string{p, p + "-wal"} {
		n += fileSize(t, f)
	}
	return n
}

// abortFails is a real store whose removal of one run's attempts fails,
// as an unreachable bucket would.
type abortFails struct {
	artifacts.Store
	run string
}

func (a *abortFails) Abort(ctx context.Context, ref artifacts.Ref) error {
	if ref.Run == a.run {
		return fmt.Errorf("artifacts: remove %s: connection refused", ref)
	}
	return a.Store.Abort(ctx, ref)
}

// TestRetentionKeepsRunWhoseArtifactsRemain checks that a run is not
// forgotten while its artifacts could not be removed (they would be
// stranded in the store), and that the next pass removes it.
func TestRetentionKeepsRunWhoseArtifactsRemain(t *testing.T) {
	ctx := context.Background()
	local, err := artifacts.NewLocal(filepath.Join(t.TempDir(), "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	store := &abortFails{Store: local}
	base, srv := startServer(t, sqliteStore(t), func(c *Config) {
		c.Artifacts = store
		c.Retention = Retention{Age: time.Hour}
	}, false)
	c, reg := register(t, base, "a", 1)
	a := fakeAgent{c, reg}
	stuck := a.complete(t, base, "org/app", "main", 64, time.Time{})
	other := a.complete(t, base, "org/app", "main", 64, time.Time{})
	store.run = fmt.Sprint(stuck.run)
	now := time.Now().Add(2 * time.Hour)
	res, err := srv.sweep(ctx, now)
	if err == nil || !strings.Contains(err.Error(), "connection refused") || res.Runs != 1 {
		t.Fatalf("sweep with one run's artifacts stuck: %+v %v; want the other run removed and the error", res, err)
	}
	if _, err := admin(base).Run(ctx, stuck.run); err != nil {
		t.Fatalf("run whose artifacts could not be removed: %v, want it kept", err)
	}
	if _, err := admin(base).Run(ctx, other.run); !api.IsStatus(err, http.StatusGone) {
		t.Fatalf("other run: %v, want 410", err)
	}
	store.run = ""
	if res, err := srv.sweep(ctx, now); err != nil || res.Runs != 1 {
		t.Fatalf("next sweep: %+v %v, want the run removed", res, err)
	}
	ref := artifacts.Ref{Repo: "org/app", Run: fmt.Sprint(stuck.run), Job: "build", Attempt: 1}
	if _, err := local.Manifest(ctx, ref); !errors.Is(err, artifacts.ErrNotFound) {
		t.Fatalf("artifacts of the removed run: %v, want them gone", err)
	}
}
