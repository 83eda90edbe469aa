package idrange

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/internal/testenv"
)

// helperEnv makes the test binary a process that opens the pool of the
// options it names ("ROOT LOCKDIR"), allocates a range, prints "ready UID
// GID" and waits to be killed.
const helperEnv = "JOBRUN_IDRANGE_TEST_HELPER"

func TestMain(m *testing.M) {
	if v := os.Getenv(helperEnv); v != "" {
		helper(v)
	}
	os.Exit(m.Run())
}

func helper(v string) {
	root, lockDir, _ := strings.Cut(v, " ")
	p, err := Open(context.Background(), Options{Root: root, LockDir: lockDir})
	if err == nil {
		var l *Lease
		if l, err = p.Allocate(); err == nil {
			fmt.Printf("ready %d %d\n", l.UID, l.GID)
			for {
				time.Sleep(time.Hour)
				runtime.KeepAlive(l)
			}
		}
	}
	fmt.Fprintln(os.Stderr, "helper:", err)
	os.Exit(1)
}

// startHelper runs the helper and returns it with the range it holds.
func startHelper(t *testing.T, o Options) (*exec.Cmd, Range) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+o.Root+" "+o.LockDir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	var r Range
	if _, serr := fmt.Sscanf(line, "ready %d %d\n", &r.UID, &r.GID); err != nil || serr != nil {
		t.Fatalf("helper: %q, %v", line, err)
	}
	return cmd, r
}

// testRoot makes a root with etc/passwd holding root and jobrun (uid 999),
// and subuid and subgid files with the given content; "" leaves a file out.
func testRoot(t *testing.T, subuid, subgid string) Options {
	t.Helper()
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc")
	files := map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\njobrun:x:999:999::/nonexistent:/usr/sbin/nologin\n",
		"subuid": subuid,
		"subgid": subgid,
	}
	if err := os.Mkdir(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, s := range files {
		if s == "" && name != "passwd" {
			continue
		}
		if err := os.WriteFile(filepath.Join(etc, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Options{Root: dir, LockDir: filepath.Join(dir, "locks")}
}

func open(t *testing.T, o Options) *Pool {
	t.Helper()
	p, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func allocate(t *testing.T, p *Pool) *Lease {
	t.Helper()
	l, err := p.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Release() })
	return l
}

func TestAllocateDisjointAndExhausted(t *testing.T) {
	// Two entries per file: blocks come from both, in file order; the
	// 30000 ids left over in the first entry make no block.
	o := testRoot(t, "alice:300000:65536\njobrun:100000:161072\njobrun:1000000:65536\n",
		"jobrun:200000:196608\n")
	p := open(t, o)
	if p.Len() != 3 {
		t.Fatalf("pool holds %d ranges, want 3", p.Len())
	}
	want := []Range{{100000, 200000}, {165536, 265536}, {1000000, 331072}}
	var held []*Lease
	for i, w := range want {
		l := allocate(t, p)
		if l.Range != w {
			t.Errorf("range %d: %+v, want %+v", i, l.Range, w)
		}
		held = append(held, l)
	}
	_, err := p.Allocate()
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "live jobs hold all 3 ranges of "+filepath.Join(o.Root, "etc/subuid")) {
		t.Fatalf("fourth allocation: %v, want exhaustion naming the file", err)
	}
	if err := held[1].Release(); err != nil {
		t.Fatal(err)
	}
	if err := held[1].Release(); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if l := allocate(t, p); l.Range != want[1] {
		t.Errorf("after release got %+v, want the released %+v", l.Range, want[1])
	}
}

func TestAllocateConcurrently(t *testing.T) {
	o := testRoot(t, "jobrun:100000:262144\n", "jobrun:100000:262144\n")
	p := open(t, o)
	type result struct {
		l   *Lease
		err error
	}
	results := make(chan result)
	for range 8 {
		go func() {
			l, err := p.Allocate()
			results <- result{l, err}
		}()
	}
	got, exhausted := map[Range]bool{}, 0
	for range 8 {
		r := <-results
		switch {
		case errors.Is(r.err, ErrExhausted):
			exhausted++
		case r.err != nil:
			t.Fatal(r.err)
		case got[r.l.Range]:
			t.Fatalf("%+v allocated twice", r.l.Range)
		default:
			got[r.l.Range] = true
			t.Cleanup(func() { r.l.Release() })
		}
	}
	if len(got) != 4 || exhausted != 4 {
		t.Fatalf("%d ranges allocated and %d refused, want 4 and 4", len(got), exhausted)
	}
}

func TestWaitForRelease(t *testing.T) {
	o := testRoot(t, "jobrun:100000:65536\n", "jobrun:100000:65536\n")
	p := open(t, o)
	held := allocate(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Wait(ctx); !errors.Is(err, ErrExhausted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("wait with a done context: %v", err)
	}
	got := make(chan *Lease)
	go func() {
		l, err := p.Wait(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	if err := held.Release(); err != nil {
		t.Fatal(err)
	}
	l := <-got
	if l == nil || l.Range != held.Range {
		t.Fatalf("waiter got %+v, want the released %+v", l, held.Range)
	}
	l.Release()
}

func TestAllocateAcrossProcesses(t *testing.T) {
	o := testRoot(t, "jobrun:100000:196608\n", "jobrun:100000:196608\n")
	_, r1 := startHelper(t, o)
	h2, r2 := startHelper(t, o)
	l := allocate(t, open(t, o))
	uids, gids := map[uint32]bool{}, map[uint32]bool{}
	for _, r := range []Range{r1, r2, l.Range} {
		if uids[r.UID] || gids[r.GID] {
			t.Fatalf("ranges %+v, %+v, %+v are not disjoint", r1, r2, l.Range)
		}
		uids[r.UID], gids[r.GID] = true, true
	}
	p := open(t, o)
	if _, err := p.Allocate(); !errors.Is(err, ErrExhausted) {
		t.Fatalf("with three holders: %v, want exhaustion", err)
	}
	// A holder killed without releasing leaves no lock behind.
	h2.Process.Kill()
	h2.Wait()
	if l := allocate(t, p); l.Range != r2 {
		t.Fatalf("after the holder of %+v died got %+v", r2, l.Range)
	}
}

func TestOpenRefusesOverlap(t *testing.T) {
	for _, c := range []struct {
		name, subuid, want string
	}{
		{"other user", "alice:100000:65536\njobrun:150000:65536\n",
			"etc/subuid:2: jobrun's 150000-215535 (", // ...overlaps alice's, naming line 1
		},
		{"other user by uid", "jobrun:100000:65536\n1000:120000:10\n",
			"overlaps 1000's 120000-120009"},
		{"own entries", "jobrun:100000:65536\njobrun:165535:65536\n",
			"etc/subuid:2: jobrun's 165535-231070"},
		{"host root", "jobrun:0:65536\n", "holds id 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := testRoot(t, c.subuid, "jobrun:100000:65536\n")
			before, _ := os.ReadFile(filepath.Join(o.Root, "etc/subuid"))
			o.Slots = 4
			_, err := Open(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
			after, _ := os.ReadFile(filepath.Join(o.Root, "etc/subuid"))
			if string(before) != string(after) {
				t.Errorf("subuid changed on refusal: %q", after)
			}
		})
	}
	t.Run("names both lines", func(t *testing.T) {
		o := testRoot(t, "alice:100000:65536\njobrun:150000:65536\n", "jobrun:100000:65536\n")
		_, err := Open(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), "overlaps alice's 100000-165535 ("+filepath.Join(o.Root, "etc/subuid")+":1)") {
			t.Fatalf("got %v", err)
		}
	})
	// Positive control: adjacent ranges and entries by uid are fine.
	o := testRoot(t, "alice:100000:65536\njobrun:165536:65536\n999:231072:65536\n", "jobrun:100000:131072\n")
	if p := open(t, o); p.Len() != 2 {
		t.Fatalf("pool holds %d ranges, want 2", p.Len())
	}
}

// TestOpenRefusesHostIDs: a range holding the id of a host user or group
// would give jobs that account's files.
func TestOpenRefusesHostIDs(t *testing.T) {
	o := testRoot(t, "jobrun:900:65536\n", "jobrun:100000:65536\n")
	if _, err := Open(context.Background(), o); err == nil || !strings.Contains(err.Error(),
		"etc/subuid:1: jobrun's 900-66435 ("+filepath.Join(o.Root, "etc/subuid")+":1) holds id 999 of user jobrun ("+filepath.Join(o.Root, "etc/passwd")+")") {
		t.Errorf("range over the host's users: %v", err)
	}
	o = testRoot(t, "jobrun:100000:65536\n", "jobrun:100000:65536\n")
	if err := os.WriteFile(filepath.Join(o.Root, "etc/group"), []byte("root:x:0:\nbig:x:150000:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), o); err == nil || !strings.Contains(err.Error(), "holds id 150000 of group big") {
		t.Errorf("range over the host's groups: %v", err)
	}
	// Positive control: the same group file with the range above it.
	if err := os.WriteFile(filepath.Join(o.Root, "etc/subgid"), []byte("jobrun:165536:65536\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p := open(t, o); p.Len() != 1 {
		t.Errorf("pool holds %d ranges, want 1", p.Len())
	}
}

func TestOpenRejectsMalformedFiles(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{"jobrun:100000", "want NAME:START:COUNT"},
		{"jobrun:100000:65536:x", "want NAME:START:COUNT"},
		{":100000:65536", "empty user name"},
		{"jobrun:-1:65536", `start "-1" is not an id`},
		{"jobrun:4294967296:1", `start "4294967296" is not an id`},
		{"jobrun:100000:0", `count "0" is not a positive number`},
		{"jobrun:100000:lots", `count "lots" is not a positive number`},
		{"jobrun:4294967295:1", "ends past the highest id 4294967294"},
	} {
		o := testRoot(t, "# comment\n\n"+c.line+"\n", "jobrun:100000:65536\n")
		_, err := Open(context.Background(), o)
		if want := filepath.Join(o.Root, "etc/subuid") + ":3: "; err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q and %q", c.line, err, want, c.want)
		}
	}
	o := testRoot(t, "jobrun:100000:65536\n", "jobrun:100000:65536\nbob:x:1\n")
	if _, err := Open(context.Background(), o); err == nil || !strings.Contains(err.Error(), "etc/subgid:2: ") {
		t.Errorf("bad subgid: %v", err)
	}
}

func TestOpenAddsMissingEntries(t *testing.T) {
	// The existing entries of others stay; new ones go above them, aligned.
	o := testRoot(t, "alice:100000:65536\njobrun:200000:65536", "")
	o.Slots = 3
	p := open(t, o)
	if p.Len() != 3 {
		t.Fatalf("pool holds %d ranges, want 3", p.Len())
	}
	for file, want := range map[string]string{
		"subuid": "alice:100000:65536\njobrun:200000:65536\njobrun:327680:131072\n",
		"subgid": "jobrun:131072:196608\n",
	} {
		path := filepath.Join(o.Root, "etc", file)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("%s: %q, want %q", file, b, want)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, want 0644", file, fi.Mode())
		}
	}
	// New entries go above the host's own high ids too.
	o2 := testRoot(t, "", "")
	o2.Slots = 1
	if err := os.WriteFile(filepath.Join(o2.Root, "etc/group"), []byte("big:x:200000:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	open(t, o2)
	if b, _ := os.ReadFile(filepath.Join(o2.Root, "etc/subgid")); string(b) != "jobrun:262144:65536\n" {
		t.Errorf("subgid above group 200000: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(o2.Root, "etc/subuid")); string(b) != "jobrun:131072:65536\n" {
		t.Errorf("subuid: %q", b)
	}
	// Enough entries: nothing changes.
	o.Slots = 2
	open(t, o)
	if b, _ := os.ReadFile(filepath.Join(o.Root, "etc/subgid")); string(b) != "jobrun:131072:196608\n" {
		t.Errorf("subgid changed when it held enough: %q", b)
	}
}

// TestOpenCreatesUser runs the real useradd on a root of its own (useradd
// --prefix), so the host's users stay as they are.
func TestOpenCreatesUser(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "useradd")
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc")
	os.Mkdir(etc, 0o755)
	for _, f := range []string{"passwd", "group", "shadow", "gshadow"} {
		line := "root:x:0:0:root:/root:/bin/sh\n"
		switch f {
		case "group":
			line = "root:x:0:\n"
		case "shadow":
			line = "root:*:19000:0:99999:7:::\n"
		case "gshadow":
			line = "root:*::\n"
		}
		if err := os.WriteFile(filepath.Join(etc, f), []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o := Options{Root: dir, LockDir: filepath.Join(dir, "locks"), Slots: 2}
	p := open(t, o)
	if p.Len() != 2 {
		t.Fatalf("pool holds %d ranges, want 2", p.Len())
	}
	users, err := accounts(filepath.Join(etc, "passwd"), false)
	if uid := lookup(users, "jobrun"); err != nil || uid == "" || uid == "0" {
		t.Fatalf("jobrun user: %q, %v", uid, err)
	}
	if b, _ := os.ReadFile(filepath.Join(etc, "subuid")); string(b) != "jobrun:131072:131072\n" {
		t.Errorf("subuid: %q", b)
	}
	// A second agent start finds the user and entries.
	if p := open(t, o); p.Len() != 2 {
		t.Fatalf("reopened pool holds %d ranges, want 2", p.Len())
	}
}
