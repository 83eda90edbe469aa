package scheduler

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
)

const linuxJob = `
job "build" {
  image = "busybox"
  agent = ["linux"]
  secrets = ["TOKEN"]
  step "b" { run = "true" }
}
`

// TestRegistrationTokenScopesAgents (issue #16, defect 9): an agent
// token admits agents with the labels it lists, to the jobs, secrets and
// artifacts of the repositories its globs match. An agent claiming a
// label beyond its token is refused; leasing never hands it a job of
// another repository, though older and with matching labels; removing
// the token removes its agents. The server's --registration-token (the
// positive control) still admits any label to every repository.
func TestRegistrationTokenScopesAgents(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		st := open()
		base := serve(t, st, nil)
		ctx := context.Background()
		ad := admin(base)
		tok, err := ad.AddToken(ctx, api.NewToken{Name: "org-linux", Role: api.RoleAgent, Labels: []string{"linux"}, Repos: []string{"org/*"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ad.AddToken(ctx, api.NewToken{Name: "no-repos", Role: api.RoleAgent, Labels: []string{"linux"}}); !api.IsStatus(err, http.StatusBadRequest) {
			t.Fatalf("an agent token without repositories: %v, want 400", err)
		}
		reg := func(token string, labels ...string) (*api.Client, *api.Registration, error) {
			c := &api.Client{Base: base}
			r, err := c.Register(ctx, token, api.RegisterRequest{Name: "scoped", Labels: labels, Slots: 2})
			if err == nil {
				c.Token = r.Token
			}
			return c, r, err
		}
		if _, _, err := reg(tok.Secret, "linux", "gpu"); !api.IsStatus(err, http.StatusForbidden) || !strings.Contains(err.Error(), `"gpu"`) {
			t.Fatalf("register with a label the token does not allow: %v, want 403 naming it", err)
		}
		if _, _, err := reg(withRole(t, base, api.RoleAdmin).Token, "linux"); !api.IsStatus(err, http.StatusUnauthorized) {
			t.Fatalf("register with a user token: %v, want 401", err)
		}
		if err := st.AddToken(ctx, tokenRec{Name: "old", Hash: hashToken("old-agent-token"), Role: api.RoleAgent, Labels: []string{"linux"},
			Repos: []string{"**"}, Expires: time.Now().Add(-time.Minute), Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := reg("old-agent-token", "linux"); !api.IsStatus(err, http.StatusUnauthorized) {
			t.Fatalf("register with an expired agent token: %v, want 401", err)
		}
		scoped, sreg, err := reg(tok.Secret, "linux")
		if err != nil {
			t.Fatalf("register within the token's labels: %v", err)
		}
		legacy, lreg := register(t, base, "legacy", 1, "linux")

		for _, repo := range []string{"other/app", "org/app"} {
			if err := ad.SetSecret(ctx, repo, "TOKEN", api.SetSecret{Value: "secret-of-" + repo}); err != nil {
				t.Fatal(err)
			}
		}
		// The other repository's job is older: the queue would hand it
		// out first.
		if _, err := ad.CreateRun(ctx, api.NewRun{Repo: "other/app", Branch: "main", Source: linuxJob}); err != nil {
			t.Fatal(err)
		}
		if _, err := ad.CreateRun(ctx, api.NewRun{Repo: "org/app", Branch: "main", Source: linuxJob}); err != nil {
			t.Fatal(err)
		}
		l, err := scoped.Lease(ctx, sreg.ID, 5*time.Second)
		if err != nil || l == nil || l.Repo != "org/app" || l.Secrets["TOKEN"] != "secret-of-org/app" {
			t.Fatalf("scoped agent's lease: %+v %v, want org/app's job with its secret", l, err)
		}
		if l2, err := scoped.Lease(ctx, sreg.ID, 0); err != nil || l2 != nil {
			t.Fatalf("scoped agent with a free slot got %+v %v, want nothing (other/app is not for it)", l2, err)
		}
		ol, err := legacy.Lease(ctx, lreg.ID, 5*time.Second)
		if err != nil || ol == nil || ol.Repo != "other/app" || ol.Secrets["TOKEN"] != "secret-of-other/app" {
			t.Fatalf("the --registration-token agent's lease: %+v %v, want other/app's job", ol, err)
		}

		// Artifacts: each agent reads those of its token's repositories.
		for _, c := range []struct {
			a  *api.Client
			at api.Attempt
		}{{scoped, l.Attempt}, {legacy, ol.Attempt}} {
			if err := c.a.PutArtifact(ctx, c.at, "x", strings.NewReader("x"), 1); err != nil {
				t.Fatal(err)
			}
			m := artifacts.Manifest{Created: time.Now(), Files: []artifacts.ManifestFile{{Path: "x", Size: 1, Mode: 0o644, SHA256: sum256("x")}}}
			if err := c.a.CommitArtifacts(ctx, c.at, m); err != nil {
				t.Fatal(err)
			}
		}
		var m artifacts.Manifest
		if err := scoped.Manifest(ctx, ol.Attempt, &m); !api.IsStatus(err, http.StatusUnauthorized) {
			t.Fatalf("scoped agent reads other/app's artifacts: %v, want 401", err)
		}
		if err := scoped.Manifest(ctx, l.Attempt, &m); err != nil {
			t.Fatalf("scoped agent reads org/app's artifacts: %v", err)
		}
		if err := legacy.Manifest(ctx, l.Attempt, &m); err != nil {
			t.Fatalf("the --registration-token agent reads org/app's artifacts: %v", err)
		}

		// Removing the token removes its agents.
		if err := ad.RemoveToken(ctx, "org-linux"); err != nil {
			t.Fatal(err)
		}
		if _, err := scoped.Heartbeat(ctx, sreg.ID, api.Heartbeat{}); !api.IsStatus(err, http.StatusUnauthorized) {
			t.Fatalf("heartbeat of an agent whose token was removed: %v, want 401", err)
		}
		if _, err := legacy.Heartbeat(ctx, lreg.ID, api.Heartbeat{Running: []api.Attempt{ol.Attempt}}); err != nil {
			t.Fatalf("heartbeat of the other agent: %v", err)
		}
		if _, _, err := reg(tok.Secret, "linux"); !api.IsStatus(err, http.StatusUnauthorized) {
			t.Fatalf("register with a removed token: %v, want 401", err)
		}
	})
}
