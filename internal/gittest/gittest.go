// Package gittest gives tests real git repositories made with the git CLI,
// and a real smart-HTTP git server (git http-backend behind net/http/cgi)
// that wants a token, as a forge does for a private repository.
package gittest

import (
	"crypto/subtle"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/testenv"
)

// Repo is a work tree made by git init in a temp dir, on branch main.
type Repo struct {
	t   testing.TB
	Dir string
}

// New makes an empty repository on branch main.
func New(t testing.TB) *Repo {
	t.Helper()
	testenv.RequireTool(t, "git")
	r := &Repo{t: t, Dir: t.TempDir()}
	r.Git("init", "-q", "-b", "main")
	return r
}

// Git runs git in the repository and returns its trimmed output.
func (r *Repo) Git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.Dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t",
		"GIT_CONFIG_NOSYSTEM=1", "HOME="+r.Dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Commit writes files (path → contents) and commits them, returning the
// new commit's hash.
func (r *Repo) Commit(msg string, files map[string]string) string {
	r.t.Helper()
	for name, body := range files {
		p := filepath.Join(r.Dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			r.t.Fatal(err)
		}
		r.Git("add", name)
	}
	r.Git("commit", "-q", "--allow-empty", "-m", msg)
	return r.Git("rev-parse", "HEAD")
}

// Bare makes a bare repository that stands for the forge's copy, with
// origin of r pointing at it, and returns its path.
func (r *Repo) Bare() string {
	r.t.Helper()
	dir := filepath.Join(r.t.TempDir(), "repo.git")
	cmd := exec.Command("git", "init", "-q", "--bare", "-b", "main", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("git init --bare: %v\n%s", err, out)
	}
	r.Git("remote", "add", "origin", dir)
	return dir
}

// Serve serves the bare repositories under root over git's smart HTTP
// protocol (git http-backend), refusing requests without HTTP basic auth
// whose password is token (any token when token is empty). A repository
// root/NAME.git is at URL + "/NAME.git".
func Serve(t testing.TB, root, token string) string {
	t.Helper()
	// `git http-backend` is the CGI program git's own HTTP server runs.
	h := &cgi.Handler{Path: testenv.RequireTool(t, "git"), Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, pass, ok := req.BasicAuth()
		if token != "" && (!ok || subtle.ConstantTimeCompare([]byte(pass), []byte(token)) != 1) {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
