package scheduler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/scheduler/web"
)

// sessionTTL is how long a web session lives after sign-in.
const sessionTTL = 12 * time.Hour

// sessionRec is a web session's row. Only the session id's hash is
// stored, so the database does not hold live cookies.
type sessionRec struct {
	IDHash    string
	TokenHash string
	Role      api.Role
	CSRF      string
	Expires   time.Time
	Created   time.Time
}

// CreateSession stores a session.
func (s *SQL) CreateSession(ctx context.Context, rec sessionRec) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO web_sessions (id_hash, token_hash, role, csrf, expires_at, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, rec.IDHash, rec.TokenHash, string(rec.Role), rec.CSRF, ms(rec.Expires), ms(rec.Created))
	if err != nil {
		return fmt.Errorf("store session: %w", err)
	}
	return nil
}

// Session returns the unexpired session with idHash; it also drops
// expired sessions now and then (every lookup that finds none).
func (s *SQL) Session(ctx context.Context, idHash string, now time.Time) (*sessionRec, error) {
	var rec sessionRec
	var role string
	var exp, created int64
	err := s.db.QueryRowContext(ctx, `SELECT id_hash, token_hash, role, csrf, expires_at, created_at FROM web_sessions
		WHERE id_hash = $1 AND expires_at > $2`, idHash, ms(now)).Scan(&rec.IDHash, &rec.TokenHash, &role, &rec.CSRF, &exp, &created)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM web_sessions WHERE expires_at <= $1`, ms(now)); err != nil {
			return nil, fmt.Errorf("drop expired sessions: %w", err)
		}
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("look up session: %w", err)
	}
	rec.Role, rec.Expires, rec.Created = api.Role(role), fromMS(exp), fromMS(created)
	return &rec, nil
}

// DeleteSession ends a session.
func (s *SQL) DeleteSession(ctx context.Context, idHash string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM web_sessions WHERE id_hash = $1`, idHash)
	return err
}

// SignIn opens a web session for a user token: its role, a random id and
// CSRF token, and an expiry the server keeps.
func (b webBackend) SignIn(ctx context.Context, token string) (*web.Session, error) {
	if token == "" {
		return nil, web.ErrBadToken
	}
	role, _, err := b.s.roleOfToken(ctx, token)
	if err != nil {
		return nil, err
	}
	if !sameToken(token, b.s.cfg.AdminToken) {
		// A token that is not stored gives no session, even where
		// anonymous callers may read.
		if _, err := b.s.st.TokenByHash(ctx, hashToken(token), time.Now()); errors.Is(err, errNotFound) {
			return nil, web.ErrBadToken
		} else if err != nil {
			return nil, err
		}
	}
	if !role.Allows(api.RoleRead) {
		return nil, web.ErrBadToken
	}
	now := time.Now()
	id, csrf := NewToken()+NewToken(), NewToken()
	rec := sessionRec{IDHash: hashToken(id), TokenHash: hashToken(token), Role: role, CSRF: csrf,
		Expires: now.Add(sessionTTL), Created: now}
	if err := b.s.st.CreateSession(ctx, rec); err != nil {
		return nil, err
	}
	return &web.Session{ID: id, CSRF: csrf, Role: role, Expires: rec.Expires}, nil
}

// Session finds a live session by its cookie's id: unexpired, and the
// token it was opened with still valid (the admin token unchanged, a
// stored token not removed or expired).
func (b webBackend) Session(ctx context.Context, id string) (*web.Session, error) {
	rec, err := b.s.st.Session(ctx, hashToken(id), time.Now())
	if errors.Is(err, errNotFound) {
		return nil, web.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if b.s.cfg.AdminToken == "" || rec.TokenHash != hashToken(b.s.cfg.AdminToken) {
		t, err := b.s.st.TokenByHash(ctx, rec.TokenHash, time.Now())
		if errors.Is(err, errNotFound) {
			return nil, web.ErrNotFound
		}
		if err != nil {
			return nil, err
		}
		if t.Role != rec.Role {
			return nil, web.ErrNotFound
		}
	}
	return &web.Session{ID: id, CSRF: rec.CSRF, Role: rec.Role, Expires: rec.Expires}, nil
}

// SignOut ends a session.
func (b webBackend) SignOut(ctx context.Context, id string) error {
	return b.s.st.DeleteSession(ctx, hashToken(id))
}
