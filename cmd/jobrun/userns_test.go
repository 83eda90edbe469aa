package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/agent/config"
	"github.com/jobrun/jobrun/agent/idrange"
	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/testenv"
)

// ramStateDir is a state dir on ramfs, a filesystem that takes no
// idmapped mounts, unmounted when the test ends.
func ramStateDir(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "ram")
	if err := os.Mkdir(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("ramfs", dir, "ramfs", 0, "mode=711"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

const ramfsCause = `idmapped mounts are unavailable on %s: its filesystem \(ramfs\) does not take idmapped mounts`

// TestAgentRefusesWithoutIdmappedMounts: an agent whose state dir cannot
// give jobs a root without chown refuses to start, naming the cause and
// the way out, and leaves nothing behind; with userns = "off" in its
// config it starts and says it runs without user namespaces.
func TestAgentRefusesWithoutIdmappedMounts(t *testing.T) {
	testenv.RequireRoot(t)
	ram := ramStateDir(t)
	leaks := leakcheck.Take(t, ram)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"--state-dir", ram, "agent", "--server", "http://127.0.0.1:1", "--token", "x"}, &out, &errb)
	t.Logf("exit %d\n%s%s", code, out.String(), errb.String())
	cause := regexp.QuoteMeta("jobrun: jobs run in user namespaces, which this host cannot give: ") +
		strings.ReplaceAll(ramfsCause, "%s", regexp.QuoteMeta(ram)) + ".*" +
		regexp.QuoteMeta(`; set userns = "off" in `+filepath.Join(ram, "config.hcl")+" to run jobs without them (a job's root is then the host's root")
	if code != 1 || !regexp.MustCompile(cause).MatchString(errb.String()) {
		t.Errorf("agent on ramfs: exit %d, stderr %q; want exit 1 and %s", code, errb.String(), cause)
	}
	leaks.Check(t)

	// Positive control: the same host with userns = "off" starts.
	if err := os.WriteFile(filepath.Join(ram, "config.hcl"), []byte("userns = \"off\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := buildJobrun(t)
	p := startPool(t, bin, "30s")
	a := p.startAgent(t, bin, &testHost{state: ram}, "ram-agent")
	want := `jobrun: agent ram-agent: user namespaces: off: userns = "off" in ` + filepath.Join(ram, "config.hcl")
	if !strings.Contains(a.log(), want) {
		t.Errorf("agent log lacks %q:\n%s", want, a.log())
	}
}

// TestLocalWarnsOnceWithoutIdmappedMounts: `jobrun local` on a state dir
// that cannot idmap runs its jobs without user namespaces after one
// warning naming the missing feature; --userns off runs without warning.
func TestLocalWarnsOnceWithoutIdmappedMounts(t *testing.T) {
	file := project(t, `
job "a" {
  image = "IMAGE"
  network = "none"
  step "s" { run = "echo ran-as-$(id -u)" }
}
job "b" {
  image = "IMAGE"
  network = "none"
  step "s" { run = "echo ran-as-$(id -u)" }
}
`, map[string]string{})
	h := &testHost{state: ramStateDir(t), artifacts: t.TempDir()}
	for _, d := range []string{"snapshots", "work/workspaces", "caches/private", "network"} {
		leaks := leakcheck.Take(t, filepath.Join(h.state, d))
		t.Cleanup(func() { leaks.Check(t) })
	}
	r := h.local(t, file)
	if r.code != 0 || strings.Count(r.out, "ran-as-0") != 2 {
		t.Fatalf("exit %d: want both jobs run", r.code)
	}
	var warnings []string
	for _, l := range strings.Split(r.err, "\n") {
		if strings.Contains(l, "warning") {
			warnings = append(warnings, l)
		}
	}
	cause := regexp.MustCompile(`^jobrun: warning: jobs run without user namespaces \(a job's root is the host's root\): ` +
		strings.ReplaceAll(ramfsCause, "%s", regexp.QuoteMeta(h.state)) + `.*; --userns off runs without this warning$`)
	if len(warnings) != 1 || !cause.MatchString(warnings[0]) {
		t.Errorf("warnings %q: want one matching %s", warnings, cause)
	}
	if want := "user namespaces: off: " + strings.ReplaceAll(ramfsCause, "%s", regexp.QuoteMeta(h.state)); !regexp.MustCompile(want).MatchString(strings.SplitN(r.out, "\n", 2)[0]) {
		t.Errorf("header %q, want %s", strings.SplitN(r.out, "\n", 2)[0], want)
	}

	r = h.local(t, file, "--userns", "off")
	if r.code != 0 || strings.Contains(r.err, "warning") || !strings.HasPrefix(r.out, "user namespaces: off: --userns off\n") {
		t.Errorf("--userns off: exit %d, stderr %q, stdout %q", r.code, r.err, r.out)
	}
	// The config's userns is the default; --userns replaces it.
	if err := os.WriteFile(filepath.Join(h.state, "config.hcl"), []byte("userns = \"off\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = h.local(t, file)
	if want := `user namespaces: off: userns = "off" in ` + filepath.Join(h.state, "config.hcl") + "\n"; r.code != 0 || strings.Contains(r.err, "warning") || !strings.HasPrefix(r.out, want) {
		t.Errorf("config userns = off: exit %d, stderr %q, stdout %q; want %q first", r.code, r.err, r.out, want)
	}
	r = h.local(t, file, "--userns", "on")
	if r.code != 0 || strings.Count(r.err, "jobrun: warning:") != 1 || !strings.Contains(r.err, "(ramfs) does not take idmapped mounts") {
		t.Errorf("--userns on over the config's off: exit %d, stderr %q", r.code, r.err)
	}
	r = h.local(t, file, "--userns", "maybe")
	if r.code != 2 || !strings.Contains(r.err, `--userns "maybe": want on or off`) {
		t.Errorf("--userns maybe: exit %d, stderr %q", r.code, r.err)
	}
}

// TestUsernsRangesSizedForJobs: on a root with no jobrun user, the
// setup creates it and entries holding one range per job slot, grows them
// for more slots, and reports the mode; it stops with a clear error on
// entries that overlap another user's or have no room left.
func TestUsernsRangesSizedForJobs(t *testing.T) {
	testenv.RequireRoot(t)
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("passwd", "root:x:0:0:root:/root:/bin/sh\n")
	write("group", "root:x:0:\n")
	s := usernsSetup{mode: config.UsernsOn, howOff: `userns = "off" in c.hcl`, stateDir: t.TempDir(), slots: 3,
		ids: idrange.Options{Root: root, LockDir: filepath.Join(root, "locks")}}
	var warn bytes.Buffer
	p, line, err := openUserns(context.Background(), s, &warn)
	if err != nil {
		t.Fatal(err)
	}
	if want := "user namespaces: on (3 ranges of jobrun from " + filepath.Join(root, "etc/subuid") + ")"; line != want || p.Len() != 3 {
		t.Errorf("mode %q, %d ranges; want %q", line, p.Len(), want)
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if !regexp.MustCompile(`(?m)^jobrun:[^:]*:\d+:\d+:.*:/usr/sbin/nologin$`).Match(passwd) {
		t.Errorf("no jobrun user made:\n%s", passwd)
	}
	for _, f := range []string{"subuid", "subgid"} {
		if b, _ := os.ReadFile(filepath.Join(root, "etc", f)); string(b) != "jobrun:131072:"+strconv.Itoa(3*idrange.Size)+"\n" {
			t.Errorf("etc/%s = %q, want 3 ranges of jobrun", f, b)
		}
	}
	s.slots = 5
	if p, _, err = openUserns(context.Background(), s, &warn); err != nil || p.Len() != 5 {
		t.Errorf("5 slots: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/subuid")); string(b) != "jobrun:131072:196608\njobrun:327680:131072\n" {
		t.Errorf("etc/subuid grown to %q", b)
	}
	if warn.Len() > 0 {
		t.Errorf("warnings: %s", warn.String())
	}

	// Another user's entry overlapping jobrun's is refused, saying where.
	write("subuid", "alice:150000:65536\njobrun:131072:196608\n")
	_, _, err = openUserns(context.Background(), s, &warn)
	if want := "user namespaces: id ranges of jobrun: " + filepath.Join(root, "etc/subuid") + ":2: jobrun's 131072-327679"; err == nil ||
		!strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "overlaps alice's 150000-215535") ||
		!strings.HasSuffix(err.Error(), `(or set userns = "off" in c.hcl to run jobs without them)`) {
		t.Errorf("overlap: %v, want %q", err, want)
	}
	// No room for more ranges above the other users' entries.
	write("subuid", "alice:100000:4294800000\n")
	write("subgid", "")
	_, _, err = openUserns(context.Background(), s, &warn)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(root, "etc/subuid")+": no room for 327680 more ids") {
		t.Errorf("no room: %v", err)
	}

	// userns = "off" probes and opens nothing.
	s = usernsSetup{mode: config.UsernsOff, why: "--userns off", stateDir: "/nonexistent",
		ids: idrange.Options{Root: "/nonexistent"}}
	if p, line, err := openUserns(context.Background(), s, &warn); p != nil || err != nil || line != "user namespaces: off: --userns off" {
		t.Errorf("off: %v %q %v", p, line, err)
	}
}

// TestUsernsProbeFailure: a failed probe stops the agent with the probe's
// reason, and lets `jobrun local` run without after one warning.
func TestUsernsProbeFailure(t *testing.T) {
	cause := errors.New("idmapped mounts are unavailable on /x: its filesystem (nfs) does not take idmapped mounts")
	s := usernsSetup{mode: config.UsernsOn, howOff: `userns = "off" in /c.hcl`, stateDir: "/x",
		probe: func(dir string) error { return cause }, ids: idrange.Options{Root: "/nonexistent"}}
	var warn bytes.Buffer
	p, _, err := openUserns(context.Background(), s, &warn)
	if p != nil || !errors.Is(err, cause) || !strings.Contains(err.Error(), `set userns = "off" in /c.hcl`) || warn.Len() > 0 {
		t.Errorf("agent: %v, %v, warned %q", p, err, warn.String())
	}
	s.fallback, s.howOff = true, "--userns off"
	p, line, err := openUserns(context.Background(), s, &warn)
	if p != nil || err != nil || line != "user namespaces: off: "+cause.Error() || strings.Count(warn.String(), "\n") != 1 ||
		!strings.Contains(warn.String(), cause.Error()) {
		t.Errorf("local: %v %q %v, warned %q", p, line, err, warn.String())
	}
}

// TestAgentUsernsOnThisHost: on this host's disk the agent starts with
// user namespaces on, its ranges from the jobrun user's entries in the
// host's /etc/subuid, at least one per --jobs. A jobrun user and entries
// the test made are removed again.
func TestAgentUsernsOnThisHost(t *testing.T) {
	testenv.RequireRoot(t)
	restoreHostIDs(t)
	bin := buildJobrun(t)
	p := startPool(t, bin, "30s")
	a := p.startAgent(t, bin, agentHost(t), "host-agent", "--jobs", "3")
	m := regexp.MustCompile(`jobrun: agent host-agent: user namespaces: on \((\d+) ranges of jobrun from /etc/subuid\)`).FindStringSubmatch(a.log())
	if m == nil {
		t.Fatalf("agent log lacks its mode:\n%s", a.log())
	}
	if n, _ := strconv.Atoi(m[1]); n < 3 {
		t.Errorf("%s ranges, want at least --jobs 3", m[1])
	}
	if b, _ := os.ReadFile("/etc/subuid"); !regexp.MustCompile(`(?m)^jobrun:\d+:\d+$`).Match(b) {
		t.Errorf("/etc/subuid has no jobrun entry:\n%s", b)
	}
}

// restoreHostIDs removes, when t ends, the jobrun user and the host's
// /etc/subuid and /etc/subgid entries that t made; a host that had the
// user keeps everything.
func restoreHostIDs(t *testing.T) {
	t.Helper()
	before := map[string][]byte{}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		before[f] = b
	}
	if exec.Command("id", "-u", idrange.DefaultUser).Run() == nil {
		return
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", idrange.DefaultUser).CombinedOutput(); err != nil {
			t.Errorf("userdel: %v: %s", err, out)
		}
		for f, b := range before {
			if err := os.WriteFile(f, b, 0o644); err != nil {
				t.Error(err)
			}
		}
	})
}

// TestLocalRefusesUnmappableImage: with user namespaces, a job whose image
// has a file owned by a uid they cannot map fails before it starts, saying
// which file and what to do; with --userns off it runs.
func TestLocalRefusesUnmappableImage(t *testing.T) {
	restoreHostIDs(t)
	img := derivedImage(t, strings.TrimSuffix(strings.TrimPrefix(busybox(t), "oci-layout:"), ":latest"),
		[]layerFile{{name: "opt", dir: true}, {name: "opt/tool", body: "x", uid: 100000, gid: 100}})
	file := project(t, `
job "high" {
  image   = "`+img+`"
  network = "none"
  step "s" { run = "echo step-ran; stat -c %u:%g /opt/tool" }
}
`, map[string]string{})
	h := newTestHost(t)
	r := h.local(t, file)
	want := regexp.MustCompile(`layer sha256:[0-9a-f]{64} \(2 of 2\) has /opt/tool owned by 100000:100; a job's user namespace maps ids 0-65535 only: rebuild the image`)
	if r.code != 1 || strings.Contains(r.out, "step-ran") || !want.MatchString(r.out+r.err) ||
		!strings.HasPrefix(r.out, "user namespaces: on (") {
		t.Errorf("userns on: exit %d, want 1 and %s before any step", r.code, want)
	}
	r = h.local(t, file, "--userns", "off")
	if r.code != 0 || !strings.Contains(r.out, "step-ran") || !strings.Contains(r.out, "100000:100") {
		t.Errorf("--userns off: exit %d, want the step run", r.code)
	}
}

// TestUsernsConfigBadValue: a userns other than "on" or "off" stops the
// agent and `jobrun local` at the config's file:line:col, before the
// state dir is touched.
func TestUsernsConfigBadValue(t *testing.T) {
	testenv.RequireRoot(t)
	state := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "agent.hcl")
	if err := os.WriteFile(cfg, []byte("pull = \"always\"\nuserns = \"no\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	job := filepath.Join(t.TempDir(), ".ci.hcl")
	if err := os.WriteFile(job, []byte("job \"a\" {\n  image = \"busybox\"\n  step \"s\" { run = \"true\" }\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := "jobrun: config: " + cfg + `:2:10: userns "no": want "on"`
	for _, args := range [][]string{
		{"agent", "--server", "http://127.0.0.1:1", "--token", "x"},
		{"local", job},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), append([]string{"--state-dir", state, "--config", cfg}, args...), &out, &errb)
		if code != 1 || !strings.HasPrefix(errb.String(), want) {
			t.Errorf("%s: exit %d, stderr %q; want %q", args[0], code, errb.String(), want)
		}
	}
	if ents, _ := os.ReadDir(state); len(ents) != 0 {
		t.Errorf("the state dir was touched: %v", ents)
	}
}
