package scheduler

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
)

// fakeForge is an httptest server speaking the commit status APIs of
// GitHub, GitLab and Gitea as documented: it records each status.
type fakeForge struct {
	mu  sync.Mutex
	got []forgeStatus
	bad []string
}

type forgeStatus struct {
	Method, Path, Auth string
	Body               map[string]string
}

func (f *fakeForge) serve(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		var body map[string]string
		if err := json.Unmarshal(data, &body); err != nil || r.Header.Get("Content-Type") != "application/json" {
			f.mu.Lock()
			f.bad = append(f.bad, "not JSON: "+string(data))
			f.mu.Unlock()
			http.Error(w, "want JSON", 400)
			return
		}
		auth := r.Header.Get("Authorization")
		if auth == "" {
			auth = "PRIVATE-TOKEN " + r.Header.Get("PRIVATE-TOKEN")
		}
		f.mu.Lock()
		f.got = append(f.got, forgeStatus{Method: r.Method, Path: r.URL.EscapedPath(), Auth: auth, Body: body})
		f.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id": 1}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func (f *fakeForge) states() []forgeStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]forgeStatus(nil), f.got...)
}

// TestCommitStatuses runs a pushed commit's job and checks each forge
// receives pending, running and the result in its own request shape.
func TestCommitStatuses(t *testing.T) {
	for _, c := range []struct {
		forge, apiPath, path, auth, nameKey string
		states                              []string
	}{
		{"github", "", "/repos/octo/hello/statuses/", "Bearer tok", "context", []string{"pending", "pending", "success"}},
		{"gitlab", "/api/v4", "/api/v4/projects/group%2Fhello/statuses/", "PRIVATE-TOKEN tok", "name", []string{"pending", "running", "success"}},
		{"gitea", "/api/v1", "/api/v1/repos/org/hello/statuses/", "token tok", "context", []string{"pending", "pending", "success"}},
	} {
		t.Run(c.forge, func(t *testing.T) {
			forge := &fakeForge{}
			apiURL := forge.serve(t) + c.apiPath
			base, _ := triggerServer(t, sqliteStore(t), nil)
			repo := newForgeRepo(t, pushMainOnly)
			forgeRepo := map[string]string{"github": "octo/hello", "gitlab": "group/hello", "gitea": "org/hello"}[c.forge]
			addRepo(t, base, api.NewRepo{Name: "hello", CloneURL: repo.bare, Secret: hookSecret, Forge: c.forge,
				Token: "tok", APIURL: apiURL, ForgeRepo: forgeRepo})
			head := repo.push("main", map[string]string{"a": "1"})
			event := map[string]string{"github": "push", "gitlab": "Push Hook", "gitea": "push"}[c.forge]
			if code, msg := deliver(t, base, c.forge, "hello", event, payload(t, c.forge, "push.json", head, ""), hookSecret); code != 201 {
				t.Fatalf("push: %d %s", code, msg)
			}
			waitFor(t, func() bool { return len(forge.states()) == 1 })
			agent, reg := register(t, base, "a", 1)
			l, err := agent.Lease(context.Background(), reg.ID, time.Second)
			if err != nil || l == nil {
				t.Fatalf("lease: %v %v", l, err)
			}
			if l.Checkout == nil || l.Checkout.Token != "tok" {
				t.Fatalf("lease checkout: %+v", l.Checkout)
			}
			waitFor(t, func() bool { return len(forge.states()) == 2 })
			if err := agent.Finish(context.Background(), l.Attempt, api.Result{Status: api.Succeeded}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return len(forge.states()) == 3 })
			time.Sleep(100 * time.Millisecond) // five more passes: nothing more is sent
			got := forge.states()
			if len(got) != 3 || len(forge.bad) > 0 {
				t.Fatalf("statuses: %+v; bad: %v", got, forge.bad)
			}
			for i, st := range got {
				if st.Method != "POST" || st.Path != c.path+head || st.Auth != c.auth {
					t.Errorf("status %d: %s %s auth %q; want POST %s auth %q", i, st.Method, st.Path, st.Auth, c.path+head, c.auth)
				}
				if st.Body["state"] != c.states[i] || st.Body[c.nameKey] != "jobrun" || st.Body["target_url"] != "https://ci.example.com/runs/"+l.Run || st.Body["description"] == "" {
					t.Errorf("status %d body: %v; want state %s, %s jobrun, a link to run %s", i, st.Body, c.states[i], c.nameKey, l.Run)
				}
			}
		})
	}
}

// TestCommitStatusFailureAndNoToken: a failed run reports failure; a
// repository without a token gets no statuses (the positive control is
// the test above).
func TestCommitStatusFailureAndNoToken(t *testing.T) {
	forge := &fakeForge{}
	apiURL := forge.serve(t)
	base, _ := triggerServer(t, sqliteStore(t), nil)
	repo := newForgeRepo(t, pushMainOnly)
	addRepo(t, base, api.NewRepo{Name: "hello", CloneURL: repo.bare, Secret: hookSecret, Forge: "github", Token: "tok", APIURL: apiURL})
	addRepo(t, base, api.NewRepo{Name: "other", CloneURL: repo.bare, Secret: hookSecret, Forge: "github", APIURL: apiURL})
	head := repo.push("main", map[string]string{"a": "1"})
	for _, name := range []string{"other", "hello"} {
		if code, msg := deliver(t, base, "github", name, "push", payload(t, "github", "push.json", head, ""), hookSecret); code != 201 {
			t.Fatalf("push: %d %s", code, msg)
		}
	}
	agent, reg := register(t, base, "a", 2)
	for i := 0; i < 2; i++ {
		l, err := agent.Lease(context.Background(), reg.ID, time.Second)
		if err != nil || l == nil {
			t.Fatalf("lease: %v %v", l, err)
		}
		if err := agent.Finish(context.Background(), l.Attempt, api.Result{Status: api.Failed, Reason: "exit 1"}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		got := forge.states()
		return len(got) > 0 && got[len(got)-1].Body["state"] == "failure"
	})
	time.Sleep(100 * time.Millisecond)
	for _, st := range forge.states() {
		// The clone URL's path names the repository when ForgeRepo is unset.
		if st.Path != "/repos/"+trimGit(repo.bare)+"/statuses/"+head {
			t.Errorf("status for %s", st.Path)
		}
	}
}

func trimGit(p string) string {
	p = p[1:]
	return p[:len(p)-len(".git")]
}

// TestSwapStatus: one server wins each move, and a move given back after
// a failed send can be made again.
func TestSwapStatus(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		s, ctx, now := open(), context.Background(), time.Now()
		for _, c := range []struct {
			old, new string
			want     bool
		}{
			{"", "pending", true},
			{"", "pending", false}, // another server sent it
			{"pending", "running", true},
			{"running", "", true}, // the send failed: given back
			{"", "running", true},
			{"pending", "success", false}, // stale view
			{"running", "success", true},
		} {
			won, err := s.SwapStatus(ctx, 7, c.old, c.new, now)
			if err != nil || won != c.want {
				t.Fatalf("SwapStatus(%q -> %q) = %v, %v; want %v", c.old, c.new, won, err, c.want)
			}
		}
	})
}
