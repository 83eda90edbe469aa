package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/pgtest"
)

// cli runs a jobrun command and returns its stdout, stderr and whether
// it succeeded.
func cli(t *testing.T, bin string, env []string, args ...string) (string, string, bool) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return out.String(), errb.String(), err == nil
}

// getStatus GETs u with a bearer token (none if "") and returns the status.
func getStatus(t *testing.T, u, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestTokenCommands drives `jobrun token add|ls|rm` against a real
// `jobrun server` on SQLite and PostgreSQL: a made token reads the API
// (nothing without it), is listed by name and role but never shown
// again, works from JOBRUN_API_TOKEN within its role, and reads nothing
// once removed.
func TestTokenCommands(t *testing.T) {
	bin := buildJobrun(t)
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			database := "sqlite"
			if db == "postgres" {
				database = pgtest.Database(t)
			}
			const admin = "token-test-admin"
			_, addr := startDaemon(t, bin, regexp.MustCompile(`server listening on (\S+)`),
				"--state-dir", t.TempDir(), "server", "--listen", "127.0.0.1:0", "--database", database, "--admin-token", admin)
			base := "http://" + addr
			as := []string{"--server", base, "--admin-token", admin}

			if code := getStatus(t, base+"/api/v1/runs", ""); code != 401 {
				t.Fatalf("runs without a token: %d, want 401", code)
			}
			out, errs, ok := cli(t, bin, nil, append([]string{"token", "add", "ci-read", "--role", "read"}, as...)...)
			secret := strings.TrimSpace(out)
			if !ok || len(secret) < 40 {
				t.Fatalf("token add: %q %s", out, errs)
			}
			if code := getStatus(t, base+"/api/v1/runs", secret); code != 200 {
				t.Fatalf("runs with the read token: %d, want 200", code)
			}
			if _, errs, ok := cli(t, bin, nil, append([]string{"token", "add", "x", "--role", "root"}, as...)...); ok || !strings.Contains(errs, `role "root"`) {
				t.Fatalf("token add --role root: ok=%v %s; want an error naming the role", ok, errs)
			}
			if _, errs, ok := cli(t, bin, nil, append([]string{"token", "add", "ci-read", "--role", "read"}, as...)...); ok || !strings.Contains(errs, "exists") {
				t.Fatalf("a second token named ci-read: ok=%v %s; want refused", ok, errs)
			}
			out, errs, ok = cli(t, bin, nil, append([]string{"token", "add", "ops", "--role", "admin", "--expires", "24h"}, as...)...)
			opsSecret := strings.TrimSpace(out)
			if !ok {
				t.Fatalf("token add ops: %s", errs)
			}
			out, errs, ok = cli(t, bin, nil, append([]string{"token", "ls"}, as...)...)
			if !ok || !regexp.MustCompile(`(?m)^ci-read\s+read\s+\S+\s+never`).MatchString(out) || !regexp.MustCompile(`(?m)^ops\s+admin\s+\S+\s+20`).MatchString(out) ||
				strings.Contains(out, secret) || strings.Contains(out, opsSecret) {
				t.Fatalf("token ls:\n%s%s", out, errs)
			}
			// The CLI's API commands take a token by JOBRUN_API_TOKEN,
			// within its role.
			if _, errs, ok := cli(t, bin, []string{"JOBRUN_API_TOKEN=" + secret}, "repo", "list", "--server", base); ok || !strings.Contains(errs, "403") {
				t.Fatalf("repo list with a read token: ok=%v %s; want 403", ok, errs)
			}
			if out, errs, ok := cli(t, bin, []string{"JOBRUN_API_TOKEN=" + opsSecret}, "repo", "list", "--server", base); !ok || !strings.Contains(out, "NAME") {
				t.Fatalf("repo list with an admin token: %s %s", out, errs)
			}
			if _, errs, ok := cli(t, bin, nil, append([]string{"token", "rm", "ci-read"}, as...)...); !ok {
				t.Fatalf("token rm: %s", errs)
			}
			if code := getStatus(t, base+"/api/v1/runs", secret); code != 401 {
				t.Fatalf("runs with a removed token: %d, want 401", code)
			}
			if code := getStatus(t, base+"/api/v1/runs", opsSecret); code != 200 {
				t.Fatalf("runs with the remaining token: %d, want 200", code)
			}
		})
	}
}

// TestServerPublicReadAndMetricsListen: `jobrun server --public-read`
// serves reads to anyone and still refuses actions; /metrics needs the
// read role on --listen, and --metrics-listen serves it without one.
func TestServerPublicReadAndMetricsListen(t *testing.T) {
	bin := buildJobrun(t)
	const admin = "public-read-admin"
	srv, addr := startDaemon(t, bin, regexp.MustCompile(`server listening on (\S+)`),
		"--state-dir", t.TempDir(), "server", "--listen", "127.0.0.1:0", "--admin-token", admin, "--metrics-listen", "127.0.0.1:0")
	base := "http://" + addr
	m := regexp.MustCompile(`metrics on http://(\S+)/metrics`).FindStringSubmatch(srv.log())
	if m == nil {
		t.Fatalf("no metrics address in:\n%s", srv.log())
	}
	if code := getStatus(t, base+"/metrics", ""); code != 401 {
		t.Fatalf("/metrics on --listen without a token: %d, want 401", code)
	}
	if code := getStatus(t, base+"/metrics", admin); code != 200 {
		t.Fatalf("/metrics on --listen with the admin token: %d, want 200", code)
	}
	if code := getStatus(t, "http://"+m[1]+"/metrics", ""); code != 200 {
		t.Fatalf("/metrics on --metrics-listen: %d, want 200", code)
	}
	if code := getStatus(t, "http://"+m[1]+"/api/v1/runs", ""); code != 404 {
		t.Fatalf("the API on --metrics-listen: %d, want 404 (metrics only)", code)
	}
	if code := getStatus(t, base+"/api/v1/runs", ""); code != 401 {
		t.Fatalf("runs without --public-read: %d, want 401", code)
	}

	_, addr = startDaemon(t, bin, regexp.MustCompile(`server listening on (\S+)`),
		"--state-dir", t.TempDir(), "server", "--listen", "127.0.0.1:0", "--admin-token", admin, "--public-read")
	pub := "http://" + addr
	for _, p := range []string{"/api/v1/runs", "/api/v1/agents", "/metrics", "/", "/agents"} {
		if code := getStatus(t, pub+p, ""); code != 200 {
			t.Errorf("%s with --public-read and no token: %d, want 200", p, code)
		}
	}
	resp, err := http.Post(pub+"/api/v1/jobs/1/cancel", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("cancel with --public-read and no token: %s, want 401", resp.Status)
	}
}
