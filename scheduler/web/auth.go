package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jobrun/jobrun/api"
)

// Session is a signed-in browser: ID is the secret its cookie holds, CSRF
// the token its forms carry, Role what the token signed in with may do.
type Session struct {
	ID      string
	CSRF    string
	Role    api.Role
	Expires time.Time
}

// ErrBadToken is what Backend.SignIn returns for a token that opens no
// session.
var ErrBadToken = errors.New("unknown or expired token")

// sessionCookie holds the session's random id; the session itself (role,
// CSRF token, expiry) is kept by the Backend, in the shared database.
const sessionCookie = "jobrun_session"

type ctxKey struct{}

// session returns the request's session, nil for an anonymous caller.
func session(r *http.Request) *Session {
	s, _ := r.Context().Value(ctxKey{}).(*Session)
	return s
}

// role is what the request may do: its session's role, read for anyone
// on a server with PublicRead, else none.
func (u *ui) role(r *http.Request) api.Role {
	if s := session(r); s != nil {
		return s.Role
	}
	if u.opts.PublicRead {
		return api.RoleRead
	}
	return api.RoleNone
}

// withSession finds the session the cookie names; a cookie of an ended
// session is cleared.
func (u *ui) withSession(w http.ResponseWriter, r *http.Request) (*http.Request, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return r, nil
	}
	s, err := u.b.Session(r.Context(), c.Value)
	if errors.Is(err, ErrNotFound) {
		u.clearCookie(w, r)
		return r, nil
	}
	if err != nil {
		return r, err
	}
	return r.WithContext(context.WithValue(r.Context(), ctxKey{}, s)), nil
}

// open reports whether path is served to anyone: signing in and out, and
// the static files.
func open(path string) bool {
	return path == "/login" || path == "/logout" || strings.HasPrefix(path, "/static/")
}

// mayRead answers a request the caller may not read: a page sends the
// browser to sign in, anything else gets 401.
func (u *ui) mayRead(w http.ResponseWriter, r *http.Request) bool {
	if open(r.URL.Path) || u.role(r).Allows(api.RoleRead) {
		return true
	}
	if r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, "/events") && !strings.Contains(r.URL.Path, "/artifacts/") {
		http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return false
	}
	u.error(w, r, http.StatusUnauthorized, "Sign in with a token that may read.")
	return false
}

// secure reports whether the session cookie must only travel over TLS:
// the server's public URL is https, or this request came over TLS.
func (u *ui) secure(r *http.Request) bool { return u.opts.Secure || r.TLS != nil }

func (u *ui) clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true,
		Secure: u.secure(r), SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

// checkCSRF accepts a POST whose form carries its session's CSRF token
// and, when the browser says where it came from, comes from this site.
func (u *ui) checkCSRF(r *http.Request) bool {
	s := session(r)
	return s != nil && sameOrigin(r) && subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.CSRF)) == 1
}

// sameOrigin refuses a form another site's page sent, where the browser
// says so (Origin); a request without the header is not from a browser
// that would carry the session cookie across sites (SameSite=Strict).
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o == "" || o == scheme(r)+"://"+r.Host
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

func (u *ui) loginPage(w http.ResponseWriter, r *http.Request) {
	u.render(w, r, http.StatusOK, "login", page{Title: "Sign in", Data: map[string]any{"Next": safeNext(r.URL.Query().Get("next"))}})
}

func (u *ui) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		u.error(w, r, http.StatusForbidden, "The sign-in form was sent from another site.")
		return
	}
	next := safeNext(r.PostFormValue("next"))
	s, err := u.b.SignIn(r.Context(), r.PostFormValue("token"))
	if errors.Is(err, ErrBadToken) {
		u.render(w, r, http.StatusUnauthorized, "login", page{Title: "Sign in", Data: map[string]any{
			"Next": next, "Error": "That token is unknown, expired or has no role for the web UI."}})
		return
	}
	if err != nil {
		u.fail(w, r, err)
		return
	}
	// An old session of this browser ends with the new one.
	if old := session(r); old != nil {
		if err := u.b.SignOut(r.Context(), old.ID); err != nil {
			u.log.Warn("end replaced session", "error", err)
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.ID, Path: "/", HttpOnly: true,
		Secure: u.secure(r), SameSite: http.SameSiteStrictMode, Expires: s.Expires,
		MaxAge: int(time.Until(s.Expires) / time.Second)})
	u.log.Info("signed in to the web UI", "role", s.Role)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (u *ui) logout(w http.ResponseWriter, r *http.Request) {
	if session(r) == nil {
		// Already ended (expired, or its token removed).
		u.clearCookie(w, r)
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if !u.checkCSRF(r) {
		u.error(w, r, http.StatusForbidden, "The form was not sent from this site's page (CSRF token missing or wrong).")
		return
	}
	if err := u.b.SignOut(r.Context(), session(r).ID); err != nil {
		u.fail(w, r, err)
		return
	}
	u.clearCookie(w, r)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// safeNext keeps redirects after sign-in on this site: an absolute path
// of printable ASCII without backslashes that no browser reads as
// another host ("//evil", "/\evil", "/\t/evil" which browsers read as
// "//evil" after dropping the tab). Anything else is "/".
func safeNext(p string) string {
	if len(p) == 0 || p[0] != '/' {
		return "/"
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return "/"
		}
	}
	if strings.HasPrefix(p, "//") {
		return "/"
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return "/"
	}
	return p
}

// act handles a job's cancel or retry button: the operate role and the
// session's CSRF token.
func (u *ui) act(do func(context.Context, int64) error, what string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := u.pathID(w, r, "id")
		if !ok {
			return
		}
		if !u.role(r).Allows(api.RoleOperate) || session(r) == nil {
			u.error(w, r, http.StatusForbidden, "Sign in with a token with the operate role to "+what+" jobs.")
			return
		}
		if !u.checkCSRF(r) {
			u.error(w, r, http.StatusForbidden, "The form was not sent from this site's page (CSRF token missing or wrong).")
			return
		}
		if err := do(r.Context(), id); err != nil {
			u.fail(w, r, err)
			return
		}
		u.log.Info("job "+what+" from the web UI", "job", id)
		http.Redirect(w, r, "/jobs/"+itoa(id), http.StatusSeeOther)
	}
}
