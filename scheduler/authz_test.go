package scheduler

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
)

// fixture is a server with one finished job that logged a line and
// stored an artifact, and one job still queued.
type fixture struct {
	base   string
	srv    *Server
	run    *api.Run
	done   api.Attempt
	queued int64
	agent  *api.Client
}

func newFixture(t *testing.T, st Store, tweak func(*Config)) *fixture {
	t.Helper()
	ctx := context.Background()
	base, srv := startServer(t, st, tweak, true)
	f := &fixture{base: base, srv: srv}
	run, err := admin(base).CreateRun(ctx, api.NewRun{Repo: "org/app", Branch: "main", Source: twoJobs})
	if err != nil {
		t.Fatal(err)
	}
	f.run = run
	ag, reg := register(t, base, "a", 1)
	f.agent = ag
	l, err := ag.Lease(ctx, reg.ID, 5*time.Second)
	if err != nil || l == nil {
		t.Fatal(l, err)
	}
	f.done = l.Attempt
	line := logLines(t, api.LogLine{Kind: "out", Step: "b", Stream: "stdout", Text: "private build output"})
	if _, err := ag.AppendLog(ctx, l.Attempt, 0, line); err != nil {
		t.Fatal(err)
	}
	data := "private artifact\n"
	if err := ag.PutArtifact(ctx, l.Attempt, "out.txt", strings.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := ag.CommitArtifacts(ctx, l.Attempt, artifacts.Manifest{Created: time.Now(),
		Files: []artifacts.ManifestFile{{Path: "out.txt", Size: int64(len(data)), Mode: 0o644, SHA256: sum256(data)}}}); err != nil {
		t.Fatal(err)
	}
	if err := ag.Finish(ctx, l.Attempt, api.Result{Status: api.Succeeded}); err != nil {
		t.Fatal(err)
	}
	for _, j := range run.Jobs {
		if j.ID != l.Attempt.Job {
			f.queued = j.ID
		}
	}
	return f
}

// reads are every route that shows runs, logs, artifacts, agents or
// metrics, API and web UI.
func (f *fixture) reads() []string {
	j, r := f.done.Job, f.run.ID
	return []string{
		"/api/v1/runs", fmt.Sprintf("/api/v1/runs/%d", r), fmt.Sprintf("/api/v1/jobs/%d", j),
		fmt.Sprintf("/api/v1/jobs/%d/log", j), "/api/v1/agents",
		fmt.Sprintf("/api/v1/jobs/%d/attempts/1/artifacts", j), fmt.Sprintf("/api/v1/jobs/%d/attempts/1/artifacts/out.txt", j),
		"/metrics",
		"/", fmt.Sprintf("/runs/%d", r), fmt.Sprintf("/jobs/%d", j), "/agents",
		fmt.Sprintf("/jobs/%d/attempts/1/artifacts/out.txt", j),
	}
}

// fetch GETs path without following redirects, as a caller with token
// (none if ""): an API client sends it as a bearer token, a browser signs
// in with it (and reads anonymously where that fails).
func fetch(t *testing.T, base, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	if strings.HasPrefix(path, "/api/") || path == "/metrics" {
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return do(t, noRedirect(nil), req)
	}
	jar, _ := cookiejar.New(nil)
	c := noRedirect(jar)
	if token != "" {
		resp, err := c.PostForm(base+"/login", url.Values{"token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	return do(t, c, req)
}

func noRedirect(jar http.CookieJar) *http.Client {
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func do(t *testing.T, c *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusSeeOther {
		return resp.StatusCode, resp.Header.Get("Location")
	}
	return resp.StatusCode, string(b)
}

// refused reports whether a read was refused: 401, or for a web page a
// redirect to the sign-in page.
func refused(code int, body string) bool {
	return code == http.StatusUnauthorized || code == http.StatusSeeOther && strings.HasPrefix(body, "/login?next=")
}

// TestReadsNeedToken (issue #16, defect 1): runs, jobs, logs, artifacts,
// agents, metrics and the web pages refuse callers without a token, with
// a wrong one and with an agent's token (but for the artifacts of the
// repositories it may run jobs of); a token with the read role (and
// the admin token) reads them all. /healthz and webhooks stay open.
func TestReadsNeedToken(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		f := newFixture(t, open(), nil)
		reader := withRole(t, f.base, api.RoleRead).Token
		for _, p := range f.reads() {
			for who, tok := range map[string]string{"no token": "", "a wrong token": "wrong", "an agent's token": f.agent.Token} {
				if who == "an agent's token" && strings.HasPrefix(p, "/api/v1/jobs/") && strings.Contains(p, "/artifacts") {
					continue // agents fetch what their jobs need (TestRegistrationTokenScopesAgents)
				}
				if code, body := fetch(t, f.base, p, tok); !refused(code, body) {
					t.Errorf("GET %s with %s: %d, want it refused\n%.300s", p, who, code, body)
				}
			}
			for who, tok := range map[string]string{"a read token": reader, "the admin token": adminToken} {
				if code, body := fetch(t, f.base, p, tok); code != http.StatusOK || p == fmt.Sprintf("/api/v1/jobs/%d/log", f.done.Job) && !strings.Contains(body, "private build output") {
					t.Errorf("GET %s with %s: %d, want 200 (the positive control)\n%.300s", p, who, code, body)
				}
			}
		}
		if code, body := fetch(t, f.base, "/healthz", ""); code != http.StatusOK {
			t.Errorf("/healthz without a token: %d %s", code, body)
		}
		resp, err := http.Post(f.base+"/hooks/github/org/app", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusSeeOther {
			t.Errorf("a webhook without a token: %s, want it to reach the webhook handler", resp.Status)
		}
	})
}

// TestRolesGateActions: read may not cancel, retry, trigger or create
// runs; operate may cancel and retry but not create runs, manage secrets
// or tokens; a stored admin token may; an expired token reads nothing.
func TestRolesGateActions(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		st := open()
		f := newFixture(t, st, nil)
		ctx := context.Background()
		rd, op, ad := withRole(t, f.base, api.RoleRead), withRole(t, f.base, api.RoleOperate), withRole(t, f.base, api.RoleAdmin)
		nr := api.NewRun{Repo: "org/app", Branch: "main", Source: twoJobs}

		if err := rd.Cancel(ctx, f.queued); !api.IsStatus(err, http.StatusForbidden) {
			t.Fatalf("cancel with a read token: %v, want 403", err)
		}
		if err := rd.Retry(ctx, f.done.Job); !api.IsStatus(err, http.StatusForbidden) {
			t.Fatalf("retry with a read token: %v, want 403", err)
		}
		if _, err := rd.Trigger(ctx, "org/app", api.TriggerRun{Branch: "main"}); !api.IsStatus(err, http.StatusForbidden) {
			t.Fatalf("trigger with a read token: %v, want 403", err)
		}
		if _, err := op.CreateRun(ctx, nr); !api.IsStatus(err, http.StatusForbidden) {
			t.Fatalf("create a run with an operate token: %v, want 403", err)
		}
		if err := op.SetSecret(ctx, "org/app", "K", api.SetSecret{Value: "v"}); !api.IsStatus(err, http.StatusForbidden) {
			t.Fatalf("set a secret with an operate token: %v, want 403", err)
		}
		if _, err := op.AddToken(ctx, api.NewToken{Name: "mine", Role: api.RoleAdmin}); !api.IsStatus(err, http.StatusForbidden) {
			t.Fatalf("make an admin token with an operate token: %v, want 403", err)
		}
		if _, err := op.Tokens(ctx); !api.IsStatus(err, http.StatusForbidden) {
			t.Fatalf("list tokens with an operate token: %v, want 403", err)
		}
		// The positive controls.
		if err := op.Cancel(ctx, f.queued); err != nil {
			t.Fatalf("cancel with an operate token: %v", err)
		}
		if err := op.Retry(ctx, f.done.Job); err != nil {
			t.Fatalf("retry with an operate token: %v", err)
		}
		if _, err := ad.CreateRun(ctx, nr); err != nil {
			t.Fatalf("create a run with a stored admin token: %v", err)
		}
		ts, err := ad.Tokens(ctx)
		if err != nil || len(ts) != 3 {
			t.Fatalf("tokens: %+v %v, want 3", ts, err)
		}
		for _, tk := range ts {
			if tk.Secret != "" {
				t.Fatalf("a listed token carries its secret: %+v", tk)
			}
		}

		// Expiry is the server's: a token past it is refused, one before
		// it reads.
		for name, exp := range map[string]time.Time{"old": time.Now().Add(-time.Minute), "fresh": time.Now().Add(time.Hour)} {
			if err := st.AddToken(ctx, tokenRec{Name: name, Hash: hashToken("tok-" + name), Role: api.RoleRead, Expires: exp, Created: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := (&api.Client{Base: f.base, Token: "tok-old"}).Runs(ctx, "", ""); !api.IsStatus(err, http.StatusUnauthorized) {
			t.Fatalf("read with an expired token: %v, want 401", err)
		}
		if _, err := (&api.Client{Base: f.base, Token: "tok-fresh"}).Runs(ctx, "", ""); err != nil {
			t.Fatalf("read with an unexpired token: %v", err)
		}

		// A removed token reads no more.
		if _, err := rd.Runs(ctx, "", ""); err != nil {
			t.Fatal(err)
		}
		name := ""
		for _, tk := range ts {
			if tk.Role == api.RoleRead {
				name = tk.Name
			}
		}
		if err := ad.RemoveToken(ctx, name); err != nil {
			t.Fatal(err)
		}
		if _, err := rd.Runs(ctx, "", ""); !api.IsStatus(err, http.StatusUnauthorized) {
			t.Fatalf("read with a removed token: %v, want 401", err)
		}
		if _, err := ad.AddToken(ctx, api.NewToken{Name: "../x", Role: api.RoleRead}); !api.IsStatus(err, http.StatusBadRequest) {
			t.Fatalf("a token named ../x: %v, want 400", err)
		}
		if _, err := ad.AddToken(ctx, api.NewToken{Name: "x", Role: "root"}); !api.IsStatus(err, http.StatusBadRequest) {
			t.Fatalf("a token of role root: %v, want 400", err)
		}
	})
}

// TestPublicRead: with PublicRead anyone reads every read route, and
// still may not act.
func TestPublicRead(t *testing.T) {
	f := newFixture(t, sqliteStore(t), func(c *Config) { c.PublicRead = true })
	for _, p := range f.reads() {
		if code, body := fetch(t, f.base, p, ""); code != http.StatusOK {
			t.Errorf("GET %s without a token on a public server: %d\n%.300s", p, code, body)
		}
	}
	ctx := context.Background()
	if err := (&api.Client{Base: f.base}).Cancel(ctx, f.queued); !api.IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("cancel without a token on a public server: %v, want 401", err)
	}
	if err := admin(f.base).Cancel(ctx, f.queued); err != nil {
		t.Fatalf("cancel with the admin token: %v", err)
	}
}

// browser is a signed-in web client.
type browser struct {
	c    *http.Client
	csrf string
}

func signInAs(t *testing.T, base, token string) (*browser, *http.Response) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	b := &browser{c: noRedirect(jar)}
	resp, err := b.c.PostForm(base+"/login", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %s", resp.Status)
	}
	code, body := get(t, b.c, base+"/agents")
	if code != 200 {
		t.Fatalf("agents page signed in: %d", code)
	}
	b.csrf = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(body)[1]
	return b, resp
}

func (b *browser) cookie(t *testing.T, base string) string {
	u, _ := url.Parse(base)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "jobrun_session" {
			return c.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// withCookie GETs path sending only a session cookie of value v.
func withCookie(t *testing.T, base, path, v string) (int, string) {
	req, _ := http.NewRequest("GET", base+path, nil)
	req.AddCookie(&http.Cookie{Name: "jobrun_session", Value: v})
	return do(t, noRedirect(nil), req)
}

func (b *browser) post(t *testing.T, u string, form url.Values) int {
	t.Helper()
	resp, err := b.c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestWebSessionsAreRandomAndServerSide (issue #16, defect 11): the
// session cookie is random, not HMAC(admin token, fixed text); a session
// lives in the shared database (another server over it knows it), ends
// server-side at logout, at its expiry and when its token is removed;
// each session has its own CSRF token.
func TestWebSessionsAreRandomAndServerSide(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		st := open()
		f := newFixture(t, st, nil)
		other := serve(t, st, nil) // a second server on the same database
		page := "/agents"

		// The old constant cookie, computable offline, opens nothing.
		m := hmac.New(sha256.New, []byte(adminToken))
		io.WriteString(m, "jobrun web session")
		if code, body := withCookie(t, f.base, page, hex.EncodeToString(m.Sum(nil))); !refused(code, body) {
			t.Fatalf("the HMAC cookie of the admin token: %d, want refused", code)
		}

		a, _ := signInAs(t, f.base, adminToken)
		b, _ := signInAs(t, f.base, adminToken)
		ca, cb := a.cookie(t, f.base), b.cookie(t, f.base)
		if ca == cb || a.csrf == b.csrf || len(ca) < 32 {
			t.Fatalf("two sign-ins share a session id or CSRF token: %q %q / %q %q", ca, cb, a.csrf, b.csrf)
		}
		if code, _ := withCookie(t, other, page, ca); code != http.StatusOK {
			t.Fatalf("the session on another server over the same database: %d, want 200", code)
		}
		// One session's CSRF token does not act for another.
		cancelURL := fmt.Sprintf("%s/jobs/%d/cancel", f.base, f.queued)
		if code := a.post(t, cancelURL, url.Values{"csrf": {b.csrf}}); code != http.StatusForbidden {
			t.Fatalf("cancel with another session's CSRF token: %d, want 403", code)
		}
		if code := a.post(t, cancelURL, url.Values{"csrf": {a.csrf}}); code != http.StatusSeeOther {
			t.Fatalf("cancel with the session's own CSRF token: %d, want 303", code)
		}

		// Logout ends the session on the server: the cookie, replayed,
		// opens nothing; the other session lives on.
		if code := a.post(t, f.base+"/logout", url.Values{"csrf": {a.csrf}}); code != http.StatusSeeOther {
			t.Fatalf("logout: %d", code)
		}
		if code, body := withCookie(t, f.base, page, ca); !refused(code, body) {
			t.Fatalf("a logged-out session's cookie replayed: %d, want refused", code)
		}
		if code, _ := withCookie(t, f.base, page, cb); code != http.StatusOK {
			t.Fatalf("the other session after a logout: %d, want 200", code)
		}

		// Removing a token ends its sessions.
		tok, err := admin(f.base).AddToken(context.Background(), api.NewToken{Name: "web", Role: api.RoleOperate})
		if err != nil {
			t.Fatal(err)
		}
		w, _ := signInAs(t, f.base, tok.Secret)
		cw := w.cookie(t, f.base)
		if code, _ := withCookie(t, f.base, page, cw); code != http.StatusOK {
			t.Fatalf("a stored token's session: %d, want 200", code)
		}
		if err := admin(f.base).RemoveToken(context.Background(), "web"); err != nil {
			t.Fatal(err)
		}
		if code, body := withCookie(t, f.base, page, cw); !refused(code, body) {
			t.Fatalf("the session of a removed token: %d, want refused", code)
		}

		// Expiry is the server's: a session past it is refused whatever
		// the browser keeps, one before it is served.
		now := time.Now()
		for id, exp := range map[string]time.Time{"expired-session": now.Add(-time.Second), "live-session": now.Add(time.Hour)} {
			if err := st.CreateSession(context.Background(), sessionRec{IDHash: hashToken(id), TokenHash: hashToken(adminToken),
				Role: api.RoleAdmin, CSRF: "c", Expires: exp, Created: now}); err != nil {
				t.Fatal(err)
			}
		}
		if code, body := withCookie(t, f.base, page, "expired-session"); !refused(code, body) {
			t.Fatalf("an expired session: %d, want refused", code)
		}
		if code, _ := withCookie(t, f.base, page, "live-session"); code != http.StatusOK {
			t.Fatalf("an unexpired session: %d, want 200", code)
		}
	})
}

// TestSessionCookieSecureBehindTLSProxy: with an https public URL the
// session cookie is Secure although the request came over plain HTTP
// (a TLS-terminating proxy in front); with an http one it is not.
func TestSessionCookieSecureBehindTLSProxy(t *testing.T) {
	for _, tc := range []struct {
		url    string
		secure bool
	}{{"https://ci.example.com", true}, {"http://ci.internal", false}} {
		base := serve(t, sqliteStore(t), func(c *Config) { c.Triggers.PublicURL = tc.url })
		resp, err := noRedirect(nil).PostForm(base+"/login", url.Values{"token": {adminToken}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		c := resp.Header.Get("Set-Cookie")
		if resp.StatusCode != http.StatusSeeOther || strings.Contains(c, "; Secure") != tc.secure {
			t.Fatalf("public URL %s: %s, cookie %q; want Secure %v", tc.url, resp.Status, c, tc.secure)
		}
	}
}

// TestSignInRedirectStaysOnSite (issue #16, defect 12): after sign-in
// the browser goes only to a path on this site; every form of another
// host becomes "/", and a plain path is kept (the positive control).
func TestSignInRedirectStaysOnSite(t *testing.T) {
	base := serve(t, sqliteStore(t), nil)
	login := func(next string) string {
		t.Helper()
		resp, err := noRedirect(nil).PostForm(base+"/login", url.Values{"token": {adminToken}, "next": {next}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign in with next %q: %s", next, resp.Status)
		}
		return resp.Header.Get("Location")
	}
	for _, next := range []string{"/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "//evil.example", "/\\evil.example",
		"\\/evil.example", "https://evil.example/", "http:evil.example", "/ /evil.example", " //evil.example", "/\x00/evil.example",
		"javascript:alert(1)", "evil.example", "/%09/evil.example\x7f"} {
		if loc := login(next); loc != "/" {
			t.Errorf("next %q: redirected to %q, want /", next, loc)
		}
	}
	// The decoded form of /%09/evil.example in a query string too.
	code, body := fetch(t, base, "/login?next=/%09/evil.example", "")
	if code != 200 || !strings.Contains(body, `name="next" value="/"`) {
		t.Errorf("the sign-in page keeps next=/%%09/evil.example: %d", code)
	}
	for _, next := range []string{"/jobs/12", "/runs/3?x=%2F%2Fa#L4", "/"} {
		if loc := login(next); loc != next {
			t.Errorf("next %q: redirected to %q, want it kept", next, loc)
		}
	}
}
