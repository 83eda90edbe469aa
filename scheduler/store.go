package scheduler

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jobrun/jobrun/internal/lockfile"
	"github.com/jobrun/jobrun/internal/redact"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // the "sqlite" database/sql driver
)

//go:embed migrations
var migrations embed.FS

// dialect is what differs between the two databases the store runs on.
type dialect struct {
	name string
	// claim is the condition under which a queued job is taken: under
	// PostgreSQL a row another transaction is claiming is skipped, not
	// waited for, so two servers never hand out one job and never queue
	// behind each other.
	claim string
	// lockRun is appended to a select of a run's row to lock it: the
	// changes to a run's jobs and its status are serialised per run, so two
	// jobs ending at once cannot both see the other still running.
	lockRun string
	// migrateLock serialises migrations between servers starting at once.
	migrateLock string
	// groupLock tries a transaction lock on a concurrency group (its
	// repository and name, length-prefixed: $1), returning whether it was
	// taken; empty where transactions run one at a time anyway.
	groupLock string
}

var (
	sqliteDialect   = dialect{name: "sqlite", claim: "id = $1 AND status = 'queued'"}
	postgresDialect = dialect{
		name:        "postgres",
		claim:       "id = (SELECT id FROM jobs WHERE id = $1 AND status = 'queued' FOR UPDATE SKIP LOCKED)",
		lockRun:     " FOR UPDATE",
		migrateLock: "SELECT pg_advisory_xact_lock(7423011)",
		groupLock:   "SELECT pg_try_advisory_xact_lock(7423012, hashtext($1))",
	}
)

// SQL is the store over database/sql: SQLite embedded (one server) or
// PostgreSQL (several servers behind a load balancer).
type SQL struct {
	db *sql.DB
	d  dialect
	// lock keeps a second server off a SQLite file.
	lock *lockfile.Lock
}

// OpenSQLite opens (creating if needed) the SQLite database at path and
// brings its schema up to date. One server process owns the file.
func OpenSQLite(ctx context.Context, path string) (*SQL, error) {
	lock, err := lockfile.TryAcquire(path + ".lock")
	if errors.Is(err, lockfile.ErrLocked) {
		return nil, fmt.Errorf("%s is used by another jobrun server; several servers need PostgreSQL", path)
	}
	if err != nil {
		return nil, err
	}
	// The database holds sealed secrets and agent token hashes: only the
	// server's user reads it (SQLite gives its -wal and -shm files the
	// same mode).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err == nil {
		err = f.Chmod(0o600)
		f.Close()
	}
	if err != nil {
		lock.Release()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	dsn := "file:" + path + "?_pragma=auto_vacuum(INCREMENTAL)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		lock.Release()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// One connection: SQLite writes one at a time anyway, and a single
	// connection turns every transaction into a queue instead of a
	// SQLITE_BUSY retry loop.
	db.SetMaxOpenConns(1)
	s, err := open(ctx, db, sqliteDialect, path)
	if err != nil {
		lock.Release()
		return nil, err
	}
	s.lock = lock
	return s, nil
}

// OpenPostgres connects to the PostgreSQL database at url (postgres://...)
// and brings its schema up to date.
func OpenPostgres(ctx context.Context, url string) (*SQL, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	db.SetMaxOpenConns(16)
	return open(ctx, db, postgresDialect, redact.URL(url))
}

// Open opens the store a --database value names: "sqlite" (a file in
// stateDir), "sqlite:PATH", or a postgres:// URL.
func Open(ctx context.Context, database, stateDir string) (*SQL, error) {
	switch {
	case database == "" || database == "sqlite":
		return OpenSQLite(ctx, path.Join(stateDir, "jobrun.db"))
	case strings.HasPrefix(database, "sqlite:"):
		return OpenSQLite(ctx, strings.TrimPrefix(database, "sqlite:"))
	case strings.HasPrefix(database, "postgres://"), strings.HasPrefix(database, "postgresql://"):
		return OpenPostgres(ctx, database)
	}
	return nil, fmt.Errorf("database %q: want sqlite, sqlite:PATH or a postgres:// URL", redact.URL(database))
}

func open(ctx context.Context, db *sql.DB, d dialect, where string) (*SQL, error) {
	s := &SQL{db: db, d: d}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return s, nil
}

// Close closes the database.
func (s *SQL) Close() error {
	err := s.db.Close()
	if s.lock != nil {
		s.lock.Release()
	}
	return err
}

// migrate applies the embedded migrations the database has not seen, each
// in its own transaction.
func (s *SQL) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	dir := "migrations/" + s.d.name
	names, err := fs.Glob(migrations, dir+"/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		v, err := strconv.Atoi(strings.SplitN(path.Base(name), "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: no version number", name)
		}
		if err := s.apply(ctx, name, v); err != nil {
			return fmt.Errorf("migration %s: %w", path.Base(name), err)
		}
	}
	return nil
}

func (s *SQL) apply(ctx context.Context, name string, version int) error {
	body, err := migrations.ReadFile(name)
	if err != nil {
		return err
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if s.d.migrateLock != "" {
			if _, err := tx.ExecContext(ctx, s.d.migrateLock); err != nil {
				return err
			}
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		for _, stmt := range strings.Split(string(body), ";\n") {
			if strings.TrimSpace(stripComments(stmt)) == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", firstLine(stmt), err)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, version)
		return err
	})
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func firstLine(s string) string {
	s = strings.TrimSpace(stripComments(s))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// tx runs f in a transaction, committing if it returns nil.
func (s *SQL) tx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// ms is t in Unix milliseconds, the store's time unit.
func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func fromNullMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

// errNotFound is returned for a run, job or agent that does not exist.
var errNotFound = errors.New("not found")
