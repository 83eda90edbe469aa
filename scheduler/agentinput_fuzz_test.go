package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
)

// The fuzz targets send what an agent may send (log chunks, artifact
// paths and bodies, manifests, step and finish reports) to a real server
// on SQLite, as the lease holder, and require an answer below 500: no
// panic (a dropped connection), no 5xx. Their seeds are the payloads of
// the tests; `go test` runs the seeds, `go test -fuzz FuzzX` explores.

const oneJob = `
job "build" {
  image = "busybox"
  step "b" { run = "true" }
}
`

// fuzzAgent is an agent of a fuzzed server that holds a lease, leasing
// again when the last one ended.
type fuzzAgent struct {
	t    testing.TB
	base string
	c    *api.Client
	id   string
	at   api.Attempt
	hc   *http.Client
}

func newFuzzAgent(t testing.TB) *fuzzAgent {
	st, err := OpenSQLite(context.Background(), t.TempDir()+"/jobrun.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	store, err := artifacts.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Config{Store: st, Artifacts: store, TempDir: t.TempDir(), RegistrationToken: regToken, AdminToken: adminToken,
		LeaseTimeout: time.Minute, Limits: Limits{LogOutput: 4 << 20, ArtifactBytes: 4 << 20, ArtifactFiles: 100}})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	base := hs.URL
	c := &api.Client{Base: base}
	reg, err := c.Register(context.Background(), regToken, api.RegisterRequest{Name: "fuzz", Slots: 1})
	if err != nil {
		t.Fatal(err)
	}
	c.Token = reg.Token
	a := &fuzzAgent{t: t, base: base, c: c, id: reg.ID,
		hc: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	a.lease()
	return a
}

func (a *fuzzAgent) lease() {
	ctx := context.Background()
	if _, err := admin(a.base).CreateRun(ctx, api.NewRun{Repo: "org/fuzz", Branch: "main", Source: oneJob}); err != nil {
		a.t.Fatal(err)
	}
	l, err := a.c.Lease(ctx, a.id, 5*time.Second)
	if err != nil || l == nil {
		a.t.Fatalf("lease: %v %v", l, err)
	}
	a.at = l.Attempt
}

// send sends body to the attempt's path with method and fails on a
// dropped connection or a 5xx; it returns the status.
func (a *fuzzAgent) send(t testing.TB, method, path string, body []byte) int {
	u := fmt.Sprintf("%s/api/v1/jobs/%d/attempts/%d/%s", a.base, a.at.Job, a.at.Attempt, path)
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Skipf("not a request: %v", err) // the client would not send it either
	}
	req.Header.Set("Authorization", "Bearer "+a.c.Token)
	resp, err := a.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v (did the handler panic?)", method, path, err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 500 {
		t.Fatalf("%s %s with %.200q: %d %s", method, path, body, resp.StatusCode, reply)
	}
	return resp.StatusCode
}

func jsonOf(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzLogChunk(f *testing.F) {
	line := func(l api.LogLine) []byte { return append(jsonOf(f, l), '\n') }
	f.Add([]byte("hello world\n"), int64(0))
	f.Add(line(api.LogLine{Kind: "out", Step: "compile", Stream: "stdout", Text: "\x1b[1;31mred <script>\x1b[0m"}), int64(0))
	f.Add(line(api.LogLine{Kind: "notice", Text: "log truncated"}), int64(12))
	f.Add([]byte(`{"t":"2026-01-02T03:04:07Z","k":"out","x":"partial`), int64(3))
	f.Add([]byte{0, 0xff, '\n', '{'}, int64(-1))
	f.Add([]byte(nil), int64(1<<62))
	a := newFuzzAgent(f)
	f.Fuzz(func(t *testing.T, data []byte, off int64) {
		a.send(t, "PUT", "log?offset="+fmt.Sprint(off), data)
	})
}

func FuzzArtifactPath(f *testing.F) {
	for _, p := range []string{"dist/app.txt", "out/hello.txt", "a.bin", "bad\x01name", "../x", "a//b", "./a", strings.Repeat("d/", 130) + "f", "ü/名前", "x%2fy", ""} {
		f.Add(p, []byte("built by the agent\n"))
	}
	a := newFuzzAgent(f)
	f.Fuzz(func(t *testing.T, p string, body []byte) {
		u := url.URL{Path: p}
		if a.send(t, "PUT", "artifacts/"+u.EscapedPath(), body) == http.StatusGone {
			a.lease()
		}
	})
}

func FuzzManifest(f *testing.F) {
	sum := strings.Repeat("ab", 32)
	f.Add(jsonOf(f, artifacts.Manifest{Created: time.Now(), Files: []artifacts.ManifestFile{{Path: "dist/app.txt", Size: 19, Mode: 0o644, SHA256: sum}}}))
	f.Add(jsonOf(f, artifacts.Manifest{Files: []artifacts.ManifestFile{{Path: "a", Size: -1, SHA256: strings.Repeat("0", 64)}}}))
	f.Add(jsonOf(f, artifacts.Manifest{Files: []artifacts.ManifestFile{{Path: "/etc/passwd", Size: 1, Mode: 0o4777 | 1<<31}}}))
	f.Add([]byte(`{"files":[{"path":"x","size":1e30}]}`))
	f.Add([]byte(`{"files":null,"skipped":[{"path":"","reason":""}]}`))
	f.Add([]byte(`[`))
	a := newFuzzAgent(f)
	// One file uploaded, so a manifest may match it.
	a.send(f, "PUT", "artifacts/dist/app.txt", []byte("built by the agent\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		a.send(t, "POST", "artifacts", body)
	})
}

func FuzzFinish(f *testing.F) {
	f.Add(jsonOf(f, api.Result{Status: api.Failed, Reason: "step compile failed: exit code 2", Duration: api.Duration(2 * time.Second),
		Usage: api.Usage{CPU: api.Duration(700 * time.Millisecond), PeakMemory: 3 << 20, PeakPids: 4}, CacheHits: 1, Caches: 2}))
	f.Add(jsonOf(f, api.Result{Status: api.Succeeded, CacheHits: -1}))
	f.Add(jsonOf(f, api.Result{Status: api.Succeeded, Steps: []api.Step{{Index: -1, Name: "x", Status: api.Succeeded, Duration: api.Duration(-1)}}}))
	f.Add(jsonOf(f, api.Result{Status: "running"}))
	f.Add([]byte(`{"status":"succeeded","duration":"-5s","usage":{"peak_memory":-9e18}}`))
	f.Add([]byte(`{"status":"succeeded","artifacts":["../../etc"],"caches":9223372036854775807}`))
	a := newFuzzAgent(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		if code := a.send(t, "POST", "finish", body); code == http.StatusNoContent || code == http.StatusGone {
			a.lease()
		}
	})
}

func FuzzStep(f *testing.F) {
	f.Add(jsonOf(f, api.Step{Index: 0, Name: "compile", Status: api.StepRunning, Started: time.Now()}))
	f.Add(jsonOf(f, api.Step{Index: 0, Name: "compile", Status: api.Failed, Duration: api.Duration(1500 * time.Millisecond), Exit: "exit code 2"}))
	f.Add(jsonOf(f, api.Step{Index: -5, Duration: api.Duration(-1)}))
	f.Add([]byte(`{"index":99999999999,"started":"0001-01-01T00:00:00Z"}`))
	a := newFuzzAgent(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		a.send(t, "POST", "steps", body)
	})
}
