package scheduler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
	"github.com/jobrun/jobrun/internal/pgtest"
)

const (
	regToken   = "reg-token"
	adminToken = "admin-token"
)

// serve starts a Server over st and returns its URL.
func serve(t *testing.T, st Store, tweak func(*Config)) string {
	t.Helper()
	url, _ := startServer(t, st, tweak, true)
	return url
}

// startServer starts a Server over st on loopback; without background its
// Run (expiry, cron and status loops) is not started, so a test drives
// them.
func startServer(t testing.TB, st Store, tweak func(*Config), background bool) (string, *Server) {
	t.Helper()
	store, err := artifacts.NewLocal(filepath.Join(t.TempDir(), "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := LoadKey(filepath.Join(t.TempDir(), "secret.key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: st, Artifacts: store, TempDir: t.TempDir(), RegistrationToken: regToken, AdminToken: adminToken,
		Secrets: key, LeaseTimeout: 5 * time.Second, AffinityWait: 100 * time.Millisecond}
	if tweak != nil {
		tweak(&cfg)
	}
	srv := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	if background {
		go srv.Run(ctx)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { cancel(); hs.Close() })
	return hs.URL, srv
}

func sqliteStore(t testing.TB) *SQL {
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "jobrun.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func register(t *testing.T, base, name string, slots int, labels ...string) (*api.Client, *api.Registration) {
	t.Helper()
	c := &api.Client{Base: base}
	reg, err := c.Register(context.Background(), regToken, api.RegisterRequest{Name: name, Labels: labels, Slots: slots})
	if err != nil {
		t.Fatal(err)
	}
	c.Token = reg.Token
	return c, reg
}

func admin(base string) *api.Client { return &api.Client{Base: base, Token: adminToken} }

// withRole makes a stored token with role (by the admin token) and
// returns a client that sends it.
func withRole(t *testing.T, base string, role api.Role) *api.Client {
	t.Helper()
	tok, err := admin(base).AddToken(context.Background(), api.NewToken{Name: "test-" + string(role) + "-" + NewToken()[:6], Role: role})
	if err != nil {
		t.Fatal(err)
	}
	return &api.Client{Base: base, Token: tok.Secret}
}

const twoJobs = `
job "build" {
  image = "busybox"
  secrets = ["TOKEN"]
  step "b" { run = "true" }
}
job "test" {
  image = "busybox"
  needs = ["build"]
  step "t" { run = "true" }
}
`

func TestAuth(t *testing.T) {
	base := serve(t, sqliteStore(t), nil)
	ctx := context.Background()
	c := &api.Client{Base: base}
	if _, err := c.Register(ctx, "wrong", api.RegisterRequest{Name: "a", Slots: 1}); !api.IsStatus(err, 401) {
		t.Fatalf("register with a wrong token: %v, want 401", err)
	}
	a, regA := register(t, base, "a", 1)
	_, regB := register(t, base, "b", 1)
	if _, err := a.Lease(ctx, regB.ID, 0); !api.IsStatus(err, 403) {
		t.Fatalf("lease for another agent: %v, want 403", err)
	}
	if _, err := a.Lease(ctx, regA.ID, 0); err != nil {
		t.Fatalf("lease for itself (the positive control): %v", err)
	}
	nr := api.NewRun{Repo: "app", Branch: "main", Source: twoJobs}
	if _, err := (&api.Client{Base: base, Token: "nope"}).CreateRun(ctx, nr); !api.IsStatus(err, 401) {
		t.Fatalf("create run without the admin token: %v, want 401", err)
	}
	if _, err := a.CreateRun(ctx, nr); !api.IsStatus(err, 401) {
		t.Fatalf("create run with an agent token: %v, want 401", err)
	}
	if _, err := admin(base).CreateRun(ctx, nr); err != nil {
		t.Fatalf("create run with the admin token: %v", err)
	}
}

func TestInvalidJobFileMakesFailedRun(t *testing.T) {
	base := serve(t, sqliteStore(t), nil)
	run, err := admin(base).CreateRun(context.Background(), api.NewRun{Repo: "app", Branch: "main", File: ".ci.hcl",
		Source: "job \"x\" {\n  image = 3\n  stepp \"a\" {}\n}\n"})
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != api.Errored || !strings.Contains(run.Reason, ".ci.hcl:3:3") || len(run.Jobs) != 0 {
		t.Fatalf("run of a bad job file: %s %q with %d jobs; want error with file:line:col", run.Status, run.Reason, len(run.Jobs))
	}
}

func TestLongPollWakesOnQueue(t *testing.T) {
	base := serve(t, sqliteStore(t), nil)
	ctx := context.Background()
	a, reg := register(t, base, "a", 1)
	got := make(chan *api.Lease, 1)
	go func() {
		l, err := a.Lease(ctx, reg.ID, 30*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	time.Sleep(100 * time.Millisecond) // let the poll start waiting
	if _, err := admin(base).CreateRun(ctx, api.NewRun{Repo: "app", Branch: "main", Source: twoJobs}); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-got:
		if l == nil || l.Job != "build" {
			t.Fatalf("lease = %+v", l)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting lease request did not get the job queued while it waited")
	}
}

func TestSecrets(t *testing.T) {
	st := sqliteStore(t)
	base := serve(t, st, nil)
	ctx := context.Background()
	ad := admin(base)
	const value = "s3cr3t-value-42"
	if err := ad.SetSecret(ctx, "app", "TOKEN", api.SetSecret{Value: value, Branches: []string{"main", "release/*"}}); err != nil {
		t.Fatal(err)
	}
	if err := (&api.Client{Base: base}).SetSecret(ctx, "app", "TOKEN", api.SetSecret{Value: "x"}); !api.IsStatus(err, 401) {
		t.Fatalf("set secret without the admin token: %v", err)
	}
	a, reg := register(t, base, "a", 4)
	leaseOf := func(nr api.NewRun) *api.Lease {
		t.Helper()
		if _, err := ad.CreateRun(ctx, nr); err != nil {
			t.Fatal(err)
		}
		l, err := a.Lease(ctx, reg.ID, 5*time.Second)
		if err != nil || l == nil {
			t.Fatalf("lease: %v %v", l, err)
		}
		return l
	}
	if l := leaseOf(api.NewRun{Repo: "app", Branch: "main", Source: twoJobs}); l.Secrets["TOKEN"] != value {
		t.Fatalf("job on main naming TOKEN got secrets %v", l.Secrets)
	}
	if l := leaseOf(api.NewRun{Repo: "app", Branch: "release/1.0", Source: twoJobs}); l.Secrets["TOKEN"] != value {
		t.Fatalf("job on release/1.0 got secrets %v", l.Secrets)
	}
	if l := leaseOf(api.NewRun{Repo: "app", Branch: "feature", Source: twoJobs}); len(l.Secrets) != 0 {
		t.Fatalf("job on a branch the secret is not for got %v", l.Secrets)
	}
	if l := leaseOf(api.NewRun{Repo: "app", Branch: "main", Source: twoJobs, Untrusted: true}); len(l.Secrets) != 0 {
		t.Fatalf("untrusted run got %v", l.Secrets)
	}
	// The API lists names only, and the database holds no plaintext.
	resp, err := http.Get(base + "/api/v1/secrets?repo=app")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("listing secrets without the admin token: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", base+"/api/v1/secrets?repo=app", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"TOKEN"`) || strings.Contains(string(body), value) {
		t.Fatalf("secret listing = %s", body)
	}
	var sealed []byte
	if err := st.db.QueryRow(`SELECT sealed FROM secrets WHERE name = 'TOKEN'`).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), value) || len(sealed) < len(value) {
		t.Fatal("the secret is stored in plaintext")
	}
}

func TestLogAPI(t *testing.T) {
	base := serve(t, sqliteStore(t), nil)
	ctx := context.Background()
	a, reg := register(t, base, "a", 1)
	if _, err := admin(base).CreateRun(ctx, api.NewRun{Repo: "app", Branch: "main", Source: twoJobs}); err != nil {
		t.Fatal(err)
	}
	l, err := a.Lease(ctx, reg.ID, 5*time.Second)
	if err != nil || l == nil {
		t.Fatal(l, err)
	}
	line := func(text string) []byte {
		return []byte(fmt.Sprintf(`{"t":"2026-12-01T12:00:00Z","k":"out","s":"b","o":"stdout","x":%q}`+"\n", text))
	}
	first := line("first line")
	if ack, err := a.AppendLog(ctx, l.Attempt, 0, first); err != nil || ack.Size != int64(len(first)) {
		t.Fatalf("append: %+v %v", ack, err)
	}
	if ack, err := a.AppendLog(ctx, l.Attempt, 1000, line("x")); !api.IsStatus(err, 409) || ack.Size != int64(len(first)) {
		t.Fatalf("append after a gap: %+v %v; want 409 with the size", ack, err)
	}
	follow, err := withRole(t, base, api.RoleRead).Log(ctx, l.Attempt.Job, true)
	if err != nil {
		t.Fatal(err)
	}
	defer follow.Close()
	lines := make(chan string, 10)
	go func() {
		data, _ := io.ReadAll(follow)
		lines <- string(data)
	}()
	second := line("second line, sent while followed")
	if _, err := a.AppendLog(ctx, l.Attempt, int64(len(first)), second); err != nil {
		t.Fatal(err)
	}
	if err := a.Finish(ctx, l.Attempt, api.Result{Status: api.Succeeded}); err != nil {
		t.Fatal(err)
	}
	select {
	case text := <-lines:
		if !strings.Contains(text, "12:00:00.000 first line\n") || !strings.Contains(text, "second line, sent while followed") {
			t.Fatalf("followed log = %q", text)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a followed log did not end with its job")
	}
	// Finishing again (a retry whose reply was lost) is accepted; any
	// other change to an ended attempt is refused with 410.
	if err := a.Finish(ctx, l.Attempt, api.Result{Status: api.Succeeded}); err != nil {
		t.Fatalf("repeated finish: %v", err)
	}
	if _, err := a.AppendLog(ctx, l.Attempt, 0, first); !api.IsStatus(err, 410) {
		t.Fatalf("log to an ended attempt: %v, want 410", err)
	}
}

// TestTwoServersRunEveryJobOnce has two servers share one PostgreSQL
// database and four agents (two slots each) take 200 jobs from both at
// once. Each job is counted by an HTTP counter outside the scheduler as
// it "runs": every job must be counted exactly once.
func TestTwoServersRunEveryJobOnce(t *testing.T) {
	url := pgtest.Database(t)
	open := func() *SQL {
		s, err := OpenPostgres(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	bases := []string{serve(t, open(), nil), serve(t, open(), nil)}

	var mu sync.Mutex
	counts := map[string]int{}
	counter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		counts[r.URL.Query().Get("job")]++
		mu.Unlock()
	}))
	defer counter.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const runs, perRun = 20, 10
	var src strings.Builder
	for i := 0; i < perRun; i++ {
		fmt.Fprintf(&src, "job \"j%d\" {\n  image = \"busybox\"\n  step \"s\" { run = \"true\" }\n}\n", i)
	}
	var runIDs []int64
	for i := 0; i < runs; i++ {
		r, err := admin(bases[i%2]).CreateRun(ctx, api.NewRun{Repo: "app", Branch: fmt.Sprintf("b%d", i), Source: src.String()})
		if err != nil {
			t.Fatal(err)
		}
		runIDs = append(runIDs, r.ID)
	}

	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		c, reg := register(t, bases[i%2], fmt.Sprintf("agent%d", i), 2)
		for slot := 0; slot < 2; slot++ {
			c := *c
			c.Base = bases[(i+slot)%2] // each slot talks to a different server
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					l, err := c.Lease(ctx, reg.ID, time.Second)
					if err != nil {
						if ctx.Err() == nil {
							t.Error(err)
						}
						return
					}
					if l == nil {
						if done(ctx, admin(bases[0]), runIDs) {
							return
						}
						continue
					}
					resp, err := http.Get(fmt.Sprintf("%s/?job=%d", counter.URL, l.Attempt.Job))
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					if err := c.Finish(ctx, l.Attempt, api.Result{Status: api.Succeeded}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	if !done(context.Background(), admin(bases[1]), runIDs) {
		for _, id := range runIDs {
			r, err := admin(bases[1]).Run(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range r.Jobs {
				if j.Status != api.Succeeded {
					t.Logf("run %d job %s: %s %s", id, j.Name, j.Status, j.Reason)
				}
			}
		}
		t.Fatal("not every run finished")
	}
	if len(counts) != runs*perRun {
		t.Fatalf("%d distinct jobs ran, want %d", len(counts), runs*perRun)
	}
	for job, n := range counts {
		if n != 1 {
			t.Errorf("job %s ran %d times", job, n)
		}
	}
}

func done(ctx context.Context, c *api.Client, runs []int64) bool {
	for _, id := range runs {
		r, err := c.Run(ctx, id)
		if err != nil || r.Status != api.Succeeded {
			return false
		}
	}
	return true
}

// publicRead lets a test server answer reads without a token, for tests
// about something other than who may read (TestPublicRead covers that).
func publicRead(c *Config) { c.PublicRead = true }

// authGet GETs url with the admin token.
func authGet(url string) (*http.Response, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	return http.DefaultClient.Do(req)
}

// sum256 is the hex sha256 of s, as a manifest lists it.
func sum256(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
