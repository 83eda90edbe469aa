package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRootlessAllowOpensOnlyThatPort: without root there is no host
// firewall (a rootless job reaches the host's non-loopback addresses
// through pasta, as the user), so where the two modes can agree is the
// deny-list: with the host's address inside a deny range, --allow
// ADDR:PORT opens exactly that port, the same address's other port stays
// refused by the deny-list. The control: without --allow the port is
// refused, so it is the allow rule that opened it.
func TestRootlessAllowOpensOnlyThatPort(t *testing.T) {
	tunForUsers(t)
	addr := fmt.Sprintf("203.0.113.%d", rand.IntN(150)+100)
	hostAddrs(t, addr)
	open, other := hostServer(t), hostServer(t)
	allowed, refused := fmt.Sprintf("%s:%d", addr, open), fmt.Sprintf("%s:%d", addr, other)
	u := newRLUser(t, true)
	var steps strings.Builder
	for i, to := range []string{allowed, refused} {
		fmt.Fprintf(&steps, "  step \"to%d\" { run = \"if timeout 5 wget -q -O - http://%s/; then echo; echo REACHED %s; else echo REFUSED %s; fi\" }\n", i, to, to, to)
	}
	file := u.write(t, "job \"reach\" {\n  image = \"IMAGE\"\n"+steps.String()+"}\n")
	cfg := filepath.Join(u.project, "deny.hcl")
	if err := os.WriteFile(cfg, []byte("network {\n  deny = [\"203.0.113.0/24\"]\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := u.local(t, file, "--config", cfg, "--allow", allowed)
	u.checkLeaks(t)
	if r.code != 0 || !strings.Contains(r.out, "REACHED "+allowed) || !strings.Contains(r.out, "REFUSED "+refused) {
		t.Errorf("with --allow %s: want it reached and %s refused: exit %d\n%s%s", allowed, refused, r.code, r.out, r.err)
	}
	r = u.local(t, file, "--config", cfg)
	if r.code != 0 || !strings.Contains(r.out, "REFUSED "+allowed) || strings.Contains(r.out, "REACHED ") {
		t.Errorf("control: without --allow %s was not refused: exit %d\n%s%s", allowed, r.code, r.out, r.err)
	}
	if left := u.procs(); len(left) > 0 {
		t.Errorf("processes of %s left after the runs: %v", u.name, left)
	}
}
