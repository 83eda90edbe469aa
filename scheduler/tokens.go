package scheduler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/jobs"
)

// tokenRec is a stored API or registration token: its sha256, never the
// token itself.
type tokenRec struct {
	Name    string
	Hash    string
	Role    api.Role
	Labels  []string
	Repos   []string
	Expires time.Time // zero: never
	Created time.Time
}

func (t tokenRec) wire() api.Token {
	out := api.Token{Name: t.Name, Role: t.Role, Labels: t.Labels, Repos: t.Repos, Created: t.Created}
	if !t.Expires.IsZero() {
		e := t.Expires
		out.Expires = &e
	}
	return out
}

// AddToken stores a token; a name taken is errConflict.
func (s *SQL) AddToken(ctx context.Context, t tokenRec) error {
	var exp int64
	if !t.Expires.IsZero() {
		exp = ms(t.Expires)
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM api_tokens WHERE name = $1`, t.Name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: a token named %q exists (remove it first)", errConflict, t.Name)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO api_tokens (name, hash, role, labels, repos, expires_at, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, t.Name, t.Hash, string(t.Role), mustJSON(sorted(t.Labels)), mustJSON(t.Repos), exp, ms(t.Created))
		return err
	})
}

const tokenColumns = `name, hash, role, labels, repos, expires_at, created_at`

func scanToken(sc interface{ Scan(...any) error }) (tokenRec, error) {
	var t tokenRec
	var role, labels, repos string
	var exp, created int64
	err := sc.Scan(&t.Name, &t.Hash, &role, &labels, &repos, &exp, &created)
	t.Role, t.Labels, t.Repos, t.Created = api.Role(role), strList(labels), strList(repos), fromMS(created)
	if exp != 0 {
		t.Expires = fromMS(exp)
	}
	return t, err
}

// TokenByHash returns the live (stored, unexpired) token with hash.
func (s *SQL) TokenByHash(ctx context.Context, hash string, now time.Time) (*tokenRec, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM api_tokens
		WHERE hash = $1 AND (expires_at = 0 OR expires_at > $2)`, hash, ms(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("look up token: %w", err)
	}
	return &t, nil
}

// Tokens lists the stored tokens by name.
func (s *SQL) Tokens(ctx context.Context) ([]tokenRec, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+tokenColumns+` FROM api_tokens ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []tokenRec
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RemoveToken deletes a token with the web sessions signed in with it and
// the agents it admitted (their leases end now).
func (s *SQL) RemoveToken(ctx context.Context, name string, now time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var hash string
		err := tx.QueryRowContext(ctx, `SELECT hash FROM api_tokens WHERE name = $1`, name).Scan(&hash)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: no token named %q", errNotFound, name)
		}
		if err != nil {
			return err
		}
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`DELETE FROM api_tokens WHERE name = $1`, []any{name}},
			{`DELETE FROM web_sessions WHERE token_hash = $1`, []any{hash}},
			{`UPDATE jobs SET lease_expires = 0 WHERE status = 'running' AND agent_id IN (SELECT id FROM agents WHERE reg_token = $1 AND gone = 0)`, []any{name}},
			{`UPDATE agents SET gone = 1, last_seen = $2 WHERE reg_token = $1 AND gone = 0`, []any{name, ms(now)}},
		} {
			if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil {
				return fmt.Errorf("remove token %s: %w", name, err)
			}
		}
		return nil
	})
}

// tokenName is what a token may be called: it appears in listings and
// agents' records.
var tokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// userRole is the role of the user token r carries: the admin token is
// admin, a stored token has its role, no token is read on a server with
// PublicRead. Agent tokens and unknown tokens have no user role; given
// reports whether a token was sent at all.
func (s *Server) userRole(r *http.Request) (role api.Role, given bool, err error) {
	t := bearer(r)
	if t == "" {
		if s.cfg.PublicRead {
			return api.RoleRead, false, nil
		}
		return api.RoleNone, false, nil
	}
	return s.roleOfToken(r.Context(), t)
}

// roleOfToken is userRole for a token.
func (s *Server) roleOfToken(ctx context.Context, t string) (api.Role, bool, error) {
	if sameToken(t, s.cfg.AdminToken) {
		return api.RoleAdmin, true, nil
	}
	rec, err := s.st.TokenByHash(ctx, hashToken(t), time.Now())
	if errors.Is(err, errNotFound) {
		if s.cfg.PublicRead {
			return api.RoleRead, true, nil
		}
		return api.RoleNone, true, nil
	}
	if err != nil {
		return api.RoleNone, true, err
	}
	if rec.Role == api.RoleAgent {
		return api.RoleNone, true, nil
	}
	return rec.Role, true, nil
}

// need serves h to callers whose role includes role: 401 without a
// usable token, 403 with one whose role is too small.
func (s *Server) need(role api.Role, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		have, given, err := s.userRole(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if !have.Allows(role) {
			denied(w, role, have, given)
			return
		}
		h(w, r)
	}
}

func denied(w http.ResponseWriter, role, have api.Role, given bool) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="jobrun"`)
	if !given || have == api.RoleNone {
		reply(w, http.StatusUnauthorized, api.Error{Error: fmt.Sprintf("this needs a token with the %s role (Authorization: Bearer ...)", role)})
		return
	}
	reply(w, http.StatusForbidden, api.Error{Error: fmt.Sprintf("this needs the %s role; the token has %s", role, have)})
}

func (s *Server) addToken(w http.ResponseWriter, r *http.Request) {
	var req api.NewToken
	if !decode(w, r, &req) {
		return
	}
	if !tokenName.MatchString(req.Name) {
		bad(w, "token name %q: want 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", req.Name)
		return
	}
	if _, err := api.ParseRole(string(req.Role)); err != nil {
		bad(w, "token %s: %v", req.Name, err)
		return
	}
	if req.Expires < 0 {
		bad(w, "token %s: expiry %v: want a positive duration", req.Name, time.Duration(req.Expires))
		return
	}
	if req.Role != api.RoleAgent && (len(req.Labels) > 0 || len(req.Repos) > 0) {
		bad(w, "token %s: labels and repos are for agent tokens", req.Name)
		return
	}
	if req.Role == api.RoleAgent && len(req.Repos) == 0 {
		bad(w, "agent token %s: name the repositories its agents may run jobs of (repos, globs; \"**\" for all)", req.Name)
		return
	}
	for _, p := range req.Repos {
		if _, err := jobs.NewGlob(p); err != nil {
			bad(w, "agent token %s: repository pattern %q: %v", req.Name, p, err)
			return
		}
	}
	secret := "jrt_" + NewToken() + NewToken()[:16]
	now := time.Now()
	rec := tokenRec{Name: req.Name, Hash: hashToken(secret), Role: req.Role, Labels: req.Labels, Repos: req.Repos, Created: now}
	if req.Expires > 0 {
		rec.Expires = now.Add(time.Duration(req.Expires))
	}
	if err := s.st.AddToken(r.Context(), rec); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("token added", "name", rec.Name, "role", rec.Role)
	out := rec.wire()
	out.Secret = secret
	reply(w, http.StatusCreated, out)
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	recs, err := s.st.Tokens(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []api.Token{}
	for _, t := range recs {
		out = append(out, t.wire())
	}
	reply(w, http.StatusOK, out)
}

func (s *Server) removeToken(w http.ResponseWriter, r *http.Request) {
	if err := s.st.RemoveToken(r.Context(), r.PathValue("name"), time.Now()); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("token removed", "name", r.PathValue("name"))
	w.WriteHeader(http.StatusNoContent)
}

// repoAllowed reports whether one of globs matches repo.
func repoAllowed(globs []string, repo string) bool {
	for _, p := range globs {
		if g, err := jobs.NewGlob(p); err == nil && g.Match(repo) {
			return true
		}
	}
	return false
}
