package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/internal/testenv"
)

// Rootless bridge networking (issue #18): pasta carries a job's traffic
// out; the deny-list and "no host loopback" hold inside the job's
// namespace.

// tunForUsers makes /dev/net/tun usable by ordinary users, as Debian's and
// most distributions' udev rules do (mode 0666); some hosts (this one)
// have it 0600. Idempotent, test set-up as root.
func tunForUsers(t *testing.T) {
	t.Helper()
	testenv.RequireTool(t, "pasta")
	if err := os.Chmod("/dev/net/tun", 0o666); err != nil {
		t.Fatalf("/dev/net/tun: %v", err)
	}
}

// hostAddrs puts addrs on the host's loopback link (this kernel has no
// dummy links), removed when the test ends, so that a server of the
// host's listens on non-loopback addresses a job would reach through
// pasta: one ordinary, one the metadata service's.
func hostAddrs(t *testing.T, addrs ...string) {
	t.Helper()
	testenv.RequireTool(t, "ip")
	run := func(args ...string) error {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	for _, a := range addrs {
		if err := run("addr", "add", a+"/32", "dev", "lo"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := run("addr", "del", a+"/32", "dev", "lo"); err != nil {
				t.Error(err)
			}
		})
	}
}

// hostServer serves "from-host" on every address of the host's, port
// returned.
func hostServer(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "from-host") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// TestRootlessBridgeDenyAndNoHostLoopback: a rootless bridge job reaches a
// server of the host's on an ordinary address (egress through pasta) but
// neither the same server at the metadata address (the deny-list, enforced
// in the job's namespace) nor the host's loopback, at 127.0.0.1 or at the
// gateway's address (which pasta maps to the host's loopback unless told
// not to). The control: with
// deny = [] in the config the metadata address answers, so it is the rule
// that refused it. Nothing of the user's is left: no pasta, no namespace.
func TestRootlessBridgeDenyAndNoHostLoopback(t *testing.T) {
	tunForUsers(t)
	hostAddrs(t, "198.51.100.7", "169.254.169.254")
	port := hostServer(t)
	u := newRLUser(t, true)
	file := u.write(t, fmt.Sprintf(`
job "net" {
  image = "IMAGE"
  step "egress" { run = "timeout 5 wget -q -O - http://198.51.100.7:%[1]d/ && echo" }
  step "metadata" { run = "if timeout 5 wget -q -O - http://169.254.169.254:%[1]d/; then echo; echo METADATA-REACHED; else echo METADATA-REFUSED; fi" }
  step "loopback" { run = "if timeout 5 wget -q -O - http://127.0.0.1:%[1]d/; then echo; echo LOOPBACK-REACHED; exit 1; else echo LOOPBACK-REFUSED; fi" }
  step "gateway" { run = "gw=$(ip route | awk '/^default/ {print $3}'); echo gateway $gw; if timeout 5 wget -q -O - http://$gw:%[1]d/; then echo; echo GATEWAY-REACHED; exit 1; else echo GATEWAY-REFUSED; fi" }
}
`, port))
	r := u.local(t, file)
	u.checkLeaks(t)
	if r.code != 0 || !strings.Contains(r.out, "from-host") {
		t.Fatalf("egress: exit %d\n%s%s", r.code, r.out, r.err)
	}
	if !strings.Contains(r.out, "METADATA-REFUSED") || strings.Contains(r.out, "METADATA-REACHED") {
		t.Errorf("the metadata address was not refused:\n%s", r.out)
	}
	if !strings.Contains(r.out, "LOOPBACK-REFUSED") || !strings.Contains(r.out, "GATEWAY-REFUSED") {
		t.Errorf("the host's loopback was not refused, at 127.0.0.1 or at the gateway's address:\n%s", r.out)
	}
	netDir := filepath.Join(u.stateDir(), "network")
	if ents, _ := os.ReadDir(netDir); len(ents) > 0 {
		t.Errorf("%s left: %v", netDir, ents)
	}

	// Control: the same job with nothing denied reaches the metadata
	// address.
	cfg := filepath.Join(u.project, "open.hcl")
	if err := os.WriteFile(cfg, []byte("network {\n  deny = []\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = u.local(t, file, "--config", cfg)
	if r.code != 0 || !strings.Contains(r.out, "METADATA-REACHED") {
		t.Errorf("control: with deny = [] the metadata address was not reached: exit %d\n%s%s", r.code, r.out, r.err)
	}
	if left := u.procs(); len(left) > 0 {
		t.Errorf("processes of %s left after the runs: %v", u.name, left)
	}
}

// TestRootlessBridgeServices: without root, a job reaches its service by
// name and at localhost, as examples/services does as root; nothing is
// left (newRLUser checks the user's processes, checkLeaks the state).
func TestRootlessBridgeServices(t *testing.T) {
	tunForUsers(t)
	u := newRLUser(t, true)
	file := u.write(t, `
job "svc" {
  image = "IMAGE"
  service "web" {
    image   = "IMAGE"
    command = ["sh", "-c", "mkdir -p /www && echo healthy > /www/health && exec httpd -f -p 8080 -h /www"]
    port    = 8080
  }
  step "by-name" { run = "test \"$(wget -q -O - http://web:8080/health)\" = healthy && echo BY-NAME-OK" }
  step "localhost" { run = "test \"$(wget -q -O - http://localhost:8080/health)\" = healthy && echo LOCALHOST-OK" }
}
`)
	r := u.local(t, file)
	u.checkLeaks(t)
	if r.code != 0 || !strings.Contains(r.out, "BY-NAME-OK") || !strings.Contains(r.out, "LOCALHOST-OK") {
		t.Errorf("exit %d\n%s%s", r.code, r.out, r.err)
	}
}

// TestRootlessBridgeKilledLeavesNoPasta: jobrun killed outright (SIGKILL,
// no teardown) during a bridge job takes the job's pasta with it, and the
// next run removes the namespace's directory it left. The control: pasta
// ran while the job did.
func TestRootlessBridgeKilledLeavesNoPasta(t *testing.T) {
	tunForUsers(t)
	u := newRLUser(t, true)
	file := u.write(t, `
job "long" {
  image = "IMAGE"
  step "sleep" { run = "echo sleeping; sleep 306" }
}
`)
	run := u.start(t, nil, u.localArgs(file)...)
	run.waitOut(t, "| sleeping")
	pasta := func() []string {
		var ps []string
		for _, p := range u.procs() {
			if strings.Contains(p, "pasta") {
				ps = append(ps, p)
			}
		}
		return ps
	}
	if len(pasta()) == 0 {
		t.Errorf("no pasta of %s's while the bridge job ran: %v", u.name, u.procs())
	}
	t.Log("killing jobrun")
	run.cmd.Process.Kill()
	<-run.done
	t.Log("jobrun gone")
	// The kernel delivers the parent-death signals on its own; wait for
	// them, boundedly.
	for deadline := time.Now().Add(30 * time.Second); len(u.procs()) > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if left := u.procs(); len(left) > 0 {
		t.Fatalf("after SIGKILL: %v", left)
	}
	t.Log("no process left")

	// The next run's cleanup removes the dead job's network directory.
	file = u.write(t, `
job "quick" {
  image = "IMAGE"
  step "s" { run = "true" }
}
`)
	if r := u.local(t, file); r.code != 0 {
		t.Fatalf("next run: exit %d", r.code)
	}
	netDir := filepath.Join(u.stateDir(), "network")
	if ents, _ := os.ReadDir(netDir); len(ents) > 0 {
		t.Errorf("%s left after the next run: %v", netDir, ents)
	}
}
