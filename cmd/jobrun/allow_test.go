package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// allowJob is a job that reports, for each of the host's ADDR:PORTs given
// after the first, whether it reached the host's server there.
func allowJob(t *testing.T, targets ...string) string {
	t.Helper()
	var steps strings.Builder
	for i, to := range targets {
		fmt.Fprintf(&steps, "  step \"to%d\" { run = \"if timeout 5 wget -q -O - http://%s/; then echo; echo REACHED %s; else echo REFUSED %s; fi\" }\n", i, to, to, to)
	}
	return project(t, "job \"reach\" {\n  image = \"IMAGE\"\n"+steps.String()+"}\n", map[string]string{})
}

// TestLocalAllowFlag: jobrun local --allow ADDR:PORT lets a bridge job
// reach exactly that port of the host's (on an address of the host's
// outside loopback); the same address on another port and the bridge's
// gateway stay refused. Controls: without --allow the port is refused,
// and JOBRUN_LOCAL_ALLOW opens it as the flag does.
func TestLocalAllowFlag(t *testing.T) {
	addr := fmt.Sprintf("203.0.113.%d", rand.IntN(150)+100)
	hostAddrs(t, addr)
	open, other := hostServer(t), hostServer(t)
	allowed := fmt.Sprintf("%s:%d", addr, open)
	file := allowJob(t, allowed, fmt.Sprintf("%s:%d", addr, other), fmt.Sprintf("10.213.0.1:%d", open))
	h := newTestHost(t)

	r := h.local(t, file, "--allow", allowed)
	if r.code != 0 || !strings.Contains(r.out, "REACHED "+allowed) {
		t.Fatalf("with --allow %s the job did not reach it: exit %d\n%s%s", allowed, r.code, r.out, r.err)
	}
	if n := strings.Count(r.out, "REFUSED "); n != 2 || strings.Count(r.out, "REACHED ") != 1 {
		t.Errorf("with --allow %s: want only it reached, the other port and the gateway refused:\n%s", allowed, r.out)
	}

	r = h.local(t, file)
	if r.code != 0 || strings.Contains(r.out, "REACHED ") || !strings.Contains(r.out, "REFUSED "+allowed) {
		t.Errorf("without --allow a job reached the host: exit %d\n%s%s", r.code, r.out, r.err)
	}

	t.Setenv("JOBRUN_LOCAL_ALLOW", allowed)
	if r = h.local(t, file); r.code != 0 || !strings.Contains(r.out, "REACHED "+allowed) {
		t.Errorf("JOBRUN_LOCAL_ALLOW=%s did not open it: exit %d\n%s%s", allowed, r.code, r.out, r.err)
	}
}

// TestLocalAllowRefusesLoopbackAndSubnet: an allow entry no job could use
// (the host's loopback, the jobs' subnet, whose gateway is every port of
// the host) is refused before any job runs, naming the flag or the config
// file and the entry.
func TestLocalAllowRefusesLoopbackAndSubnet(t *testing.T) {
	file := allowJob(t, "192.0.2.1:1")
	h := newTestHost(t)
	r := h.local(t, file, "--allow", "127.0.0.1:5000")
	if r.code == 0 || !strings.Contains(r.err, `--allow "127.0.0.1:5000": a job cannot reach the host's loopback`) {
		t.Errorf("--allow 127.0.0.1:5000: exit %d, stderr %q", r.code, r.err)
	}
	r = h.local(t, file, "--allow", "10.213.0.1:5000")
	if r.code == 0 || !strings.Contains(r.err, `--allow 10.213.0.1:5000: inside the jobs' subnet 10.213.0.0/16`) {
		t.Errorf("--allow 10.213.0.1:5000: exit %d, stderr %q", r.code, r.err)
	}
	cfg := filepath.Join(t.TempDir(), "config.hcl")
	if err := os.WriteFile(cfg, []byte("network {\n  allow = [\"10.213.0.1:5000\"]\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = h.local(t, file, "--config", cfg)
	if r.code == 0 || !strings.Contains(r.err, cfg+`: network: allow 10.213.0.1:5000: inside the jobs' subnet`) {
		t.Errorf("allow in the subnet in %s: exit %d, stderr %q", cfg, r.code, r.err)
	}
	if strings.Contains(r.out, "REFUSED") {
		t.Errorf("a job ran despite the bad allow entry:\n%s", r.out)
	}
}
