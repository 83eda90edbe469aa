package cache

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/mount"
	"github.com/jobrun/jobrun/internal/testenv"
)

func newManager(t *testing.T, opts Options) (*Manager, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "caches")
	m, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m, dir
}

func acquire(t *testing.T, m *Manager, req Request) *Volume {
	t.Helper()
	v, err := m.Acquire(context.Background(), req)
	if err != nil {
		t.Fatalf("acquire %+v: %v", req, err)
	}
	return v
}

func release(t *testing.T, v *Volume, ok bool) {
	t.Helper()
	if err := v.Release(context.Background(), ok); err != nil {
		t.Fatalf("release %s: %v", v.ID(), err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestOpenValidates(t *testing.T) {
	if _, err := Open("relative/caches", Options{}); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Errorf("relative dir: got %v", err)
	}
	m, _ := newManager(t, Options{})
	ctx := context.Background()
	for _, tc := range []struct {
		req  Request
		want string
	}{
		{Request{Repo: "", Name: "gomod"}, "repository is empty"},
		{Request{Repo: "r", Name: ""}, "name is empty"},
		{Request{Repo: "r", Name: "a\nb"}, "control characters"},
		{Request{Repo: "r", Name: "gomod", Sharing: "exclusive"}, `invalid cache sharing "exclusive"`},
	} {
		if _, err := m.Acquire(ctx, tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Acquire(%+v) = %v, want error containing %q", tc.req, err, tc.want)
		}
	}
	// Positive control: a valid request with odd characters works and
	// stays inside the cache dir.
	v := acquire(t, m, Request{Repo: "../../etc", Name: "../passwd", Key: "a/../../b"})
	if !strings.HasPrefix(v.Path(), m.dir+"/vols/") || strings.Contains(v.ID(), "/") {
		t.Errorf("path %s escapes %s", v.Path(), m.dir)
	}
	release(t, v, true)
}

func TestSharedConcurrent(t *testing.T) {
	m, dir := newManager(t, Options{})
	req := Request{Repo: "github.com/a/app", Name: "gomod"}
	const n = 4
	vols := make([]*Volume, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			v, err := m.Acquire(context.Background(), req)
			if err != nil {
				t.Error(err)
				return
			}
			vols[i] = v
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i, v := range vols {
		if v.Path() != vols[0].Path() {
			t.Fatalf("user %d got %s, user 0 got %s", i, v.Path(), vols[0].Path())
		}
		writeFile(t, filepath.Join(v.Path(), fmt.Sprintf("f%d", i)), strings.Repeat("x", 8192))
	}
	list, err := m.List()
	if err != nil || len(list) != 1 || !list[0].InUse {
		t.Fatalf("List while in use = %+v, %v; want one volume in use", list, err)
	}
	// Eviction never removes a volume in use.
	if removed, err := m.Prune(context.Background(), 0); err != nil || len(removed) != 0 {
		t.Fatalf("Prune while in use removed %v, %v", removed, err)
	}
	for _, v := range vols {
		release(t, v, true)
	}
	list, _ = m.List()
	if len(list) != 1 || list[0].InUse || list[0].Size < n*8192 || list[0].Uses != n {
		t.Fatalf("List after release = %+v; want one idle volume of at least %d bytes used %d times", list, n*8192, n)
	}
	v := acquire(t, m, req)
	if !v.Hit() {
		t.Error("second use: Hit = false, want true")
	}
	for i := range n {
		if got := readFile(t, filepath.Join(v.Path(), fmt.Sprintf("f%d", i))); len(got) != 8192 {
			t.Errorf("f%d has %d bytes", i, len(got))
		}
	}
	release(t, v, true)
	if err := v.Release(context.Background(), true); err == nil {
		t.Error("second Release: want an error")
	}
	// Fresh volumes change the file set; compare from a state with one.
	snap := leakcheck.Take(t, dir)
	release(t, acquire(t, m, req), true)
	snap.Check(t)
}

func TestLockedConcurrent(t *testing.T) {
	m, _ := newManager(t, Options{})
	req := Request{Repo: "r", Name: "build", Sharing: Locked}
	var holders, maxHolders, waits atomic.Int32
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			r := req
			r.Wait = func(string) { waits.Add(1) }
			v, err := m.Acquire(context.Background(), r)
			if err != nil {
				t.Error(err)
				return
			}
			h := holders.Add(1)
			for {
				old := maxHolders.Load()
				if h <= old || maxHolders.CompareAndSwap(old, h) {
					break
				}
			}
			// A read-modify-write that two holders at once would break.
			p := filepath.Join(v.Path(), "counter")
			b, _ := os.ReadFile(p)
			time.Sleep(5 * time.Millisecond)
			os.WriteFile(p, append(b, byte('0'+i)), 0o644)
			holders.Add(-1)
			if err := v.Release(context.Background(), true); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if maxHolders.Load() != 1 {
		t.Errorf("locked volume had %d holders at once", maxHolders.Load())
	}
	v := acquire(t, m, Request{Repo: "r", Name: "build", Sharing: Shared})
	if got := readFile(t, filepath.Join(v.Path(), "counter")); len(got) != 6 {
		t.Errorf("counter = %q, want 6 writes (lost updates mean two holders at once)", got)
	}
	release(t, v, true)
}

func TestLockedWaitAndCancel(t *testing.T) {
	m, _ := newManager(t, Options{})
	req := Request{Repo: "r", Name: "build", Sharing: Locked}
	held := acquire(t, m, req)
	waited := make(chan string, 1)
	r := req
	r.Wait = func(msg string) { waited <- msg }
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := m.Acquire(ctx, r)
		errc <- err
	}()
	msg := <-waited
	if !strings.Contains(msg, `cache "build" is locked`) {
		t.Errorf("wait message %q", msg)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: got %v", err)
	}
	// The cancelled waiter left no user behind: once the holder goes, the
	// volume is idle and can be evicted.
	release(t, held, true)
	if removed, err := m.Prune(context.Background(), 0); err != nil || len(removed) != 1 {
		t.Fatalf("Prune after cancelled waiter removed %v, %v; want the volume", removed, err)
	}
}

func TestMain(m *testing.M) {
	if dir := os.Getenv("JOBRUN_CACHE_HELPER_DIR"); dir != "" {
		helperProcess(dir)
	}
	os.Exit(m.Run())
}

// helperProcess runs in a child test binary that holds cache volumes (see
// startHolder) until its stdin closes.
func helperProcess(dir string) {
	m, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	var u *idmap.Userns
	if os.Getenv("JOBRUN_CACHE_HELPER_USERNS") != "" {
		if u, err = idmap.NewUserns(rangeA); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
	}
	var vols []*Volume
	for _, mode := range strings.Split(os.Getenv("JOBRUN_CACHE_HELPER_MODES"), ",") {
		v, err := m.Acquire(context.Background(), Request{Repo: "r", Name: "n", Sharing: Sharing(mode), Userns: u})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		vols = append(vols, v)
		fmt.Println("path", v.Path())
	}
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
	for _, v := range vols {
		if err := v.Release(context.Background(), true); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
	}
	os.Exit(0)
}

type holder struct {
	cmd   *exec.Cmd
	stdin interface{ Close() error }
	paths []string
}

// startHolder runs a child process that acquires volume r/n in each mode and
// holds them until stop or kill.
func startHolder(t *testing.T, dir string, modes ...string) *holder {
	t.Helper()
	return startHolderEnv(t, dir, nil, modes...)
}

// startHolderEnv is startHolder with more environment for the child.
func startHolderEnv(t *testing.T, dir string, env []string, modes ...string) *holder {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "JOBRUN_CACHE_HELPER_DIR="+dir, "JOBRUN_CACHE_HELPER_MODES="+strings.Join(modes, ","))
	cmd.Env = append(cmd.Env, env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{cmd: cmd, stdin: stdin}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "ready":
			return h
		case strings.HasPrefix(line, "path "):
			h.paths = append(h.paths, strings.TrimPrefix(line, "path "))
		case strings.HasPrefix(line, "error:"):
			t.Fatalf("holder: %s", line)
		}
	}
	t.Fatalf("holder exited before it was ready: %v", cmd.Wait())
	return nil
}

func TestLockedAcrossProcesses(t *testing.T) {
	m, dir := newManager(t, Options{})
	h := startHolder(t, dir, "locked")
	waited := make(chan struct{})
	got := make(chan *Volume, 1)
	go func() {
		v, err := m.Acquire(context.Background(), Request{Repo: "r", Name: "n", Sharing: Locked, Wait: func(string) { close(waited) }})
		if err != nil {
			t.Error(err)
		}
		got <- v
	}()
	<-waited // the other process holds it: we wait
	select {
	case <-got:
		t.Fatal("acquired a locked volume another process holds")
	default:
	}
	h.stdin.Close() // the holder releases and exits
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("holder: %v", err)
	}
	v := <-got
	if v == nil {
		t.FailNow()
	}
	release(t, v, true)
}

func TestPrivateDiscardsWrites(t *testing.T) {
	testenv.RequireRoot(t)
	m, dir := newManager(t, Options{})
	base := Request{Repo: "r", Name: "gomod"}
	v := acquire(t, m, base)
	writeFile(t, filepath.Join(v.Path(), "mod/a.txt"), "trusted")
	release(t, v, true)

	snap := leakcheck.Take(t, dir)
	for _, req := range []Request{
		{Repo: "r", Name: "gomod", Sharing: Private},
		{Repo: "r", Name: "gomod", Sharing: Shared, Untrusted: true},
		{Repo: "r", Name: "gomod", Sharing: Locked, Untrusted: true},
	} {
		// Two private users at once see the shared content and only their
		// own writes.
		p1, p2 := acquire(t, m, req), acquire(t, m, req)
		if p1.Sharing() != Private || p1.Path() == p2.Path() || p1.Path() == m.dataDir(p1.ID()) {
			t.Fatalf("%+v: mode %s, paths %s and %s; want two private overlays", req, p1.Sharing(), p1.Path(), p2.Path())
		}
		if !p1.Hit() {
			t.Error("private view of a warm cache: Hit = false")
		}
		if got := readFile(t, filepath.Join(p1.Path(), "mod/a.txt")); got != "trusted" {
			t.Errorf("private view reads %q", got)
		}
		writeFile(t, filepath.Join(p1.Path(), "mod/a.txt"), "poisoned")
		writeFile(t, filepath.Join(p1.Path(), "evil"), "x")
		if err := os.Remove(filepath.Join(p2.Path(), "mod/a.txt")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(p2.Path(), "evil")); err == nil {
			t.Error("one private overlay sees another's write")
		}
		if got := readFile(t, filepath.Join(m.dataDir(p1.ID()), "mod/a.txt")); got != "trusted" {
			t.Errorf("shared dir changed under a private overlay: %q", got)
		}
		release(t, p1, true)
		release(t, p2, true)
		if _, err := os.Stat(p1.Path()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("private overlay dir %s left behind: %v", p1.Path(), err)
		}
	}
	// Positive control: a shared user's write does persist.
	v = acquire(t, m, base)
	if got := readFile(t, filepath.Join(v.Path(), "mod/a.txt")); got != "trusted" {
		t.Errorf("after private uses, shared volume reads %q", got)
	}
	if _, err := os.Stat(filepath.Join(v.Path(), "evil")); err == nil {
		t.Error("a private write reached the shared volume")
	}
	writeFile(t, filepath.Join(v.Path(), "mod/a.txt"), "updated")
	release(t, v, true)
	v = acquire(t, m, base)
	if got := readFile(t, filepath.Join(v.Path(), "mod/a.txt")); got != "updated" {
		t.Errorf("shared write lost: %q", got)
	}
	os.WriteFile(filepath.Join(v.Path(), "mod/a.txt"), []byte("trusted"), 0o644)
	release(t, v, true)
	snap.Check(t)
}

func TestScoping(t *testing.T) {
	m, _ := newManager(t, Options{})
	a := acquire(t, m, Request{Repo: "github.com/a/app", Name: "gomod", Key: "k1"})
	writeFile(t, filepath.Join(a.Path(), "secret"), "A's data")
	release(t, a, true)
	for _, req := range []Request{
		{Repo: "github.com/b/app", Name: "gomod", Key: "k1"},   // another repository
		{Repo: "github.com/a/app", Name: "gomod", Key: "k2"},   // another key
		{Repo: "github.com/a/app", Name: "gobuild", Key: "k1"}, // another name
		{Repo: "github.com/a/app/gomod", Name: "k1"},           // no collisions by concatenation
	} {
		v := acquire(t, m, req)
		if v.Hit() {
			t.Errorf("%+v: Hit on a new scope", req)
		}
		if _, err := os.Stat(filepath.Join(v.Path(), "secret")); err == nil {
			t.Errorf("%+v sees repository A's cache", req)
		}
		writeFile(t, filepath.Join(v.Path(), "secret"), "poison")
		release(t, v, true)
	}
	// Positive control: the same scope sees its data, unpoisoned.
	a = acquire(t, m, Request{Repo: "github.com/a/app", Name: "gomod", Key: "k1"})
	if !a.Hit() || readFile(t, filepath.Join(a.Path(), "secret")) != "A's data" {
		t.Errorf("repository A lost or had its data changed")
	}
	release(t, a, true)
}

func TestEvictionLRU(t *testing.T) {
	const mib = 1 << 20
	m, _ := newManager(t, Options{Budget: 5 * mib / 2})
	use := func(name string, size int) {
		t.Helper()
		v := acquire(t, m, Request{Repo: "r", Name: name})
		if size > 0 {
			writeFile(t, filepath.Join(v.Path(), "blob"), strings.Repeat("x", size))
		}
		release(t, v, true)
	}
	names := func() []string {
		list, err := m.List()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, v := range list {
			out = append(out, v.Name)
		}
		return out
	}
	use("a", mib)
	use("b", mib)
	use("a", 0) // a is now more recent than b
	if got := strings.Join(names(), ","); got != "a,b" {
		t.Fatalf("volumes = %s, want a,b", got)
	}
	use("c", mib) // 3 MiB > 2.5 MiB: the least recently used (b) goes
	if got := strings.Join(names(), ","); got != "c,a" {
		t.Fatalf("after c: volumes = %s, want c,a (b evicted as least recently used)", got)
	}
	// A volume in use survives even when it is the oldest.
	held := acquire(t, m, Request{Repo: "r", Name: "a"})
	use("d", mib)
	if got := strings.Join(names(), ","); got != "d,a" {
		t.Fatalf("after d with a held: volumes = %s, want d,a", got)
	}
	release(t, held, true)
	removed, err := m.Prune(context.Background(), 0)
	if err != nil || len(removed) != 2 || len(names()) != 0 {
		t.Fatalf("Prune all removed %d, %v; left %v", len(removed), err, names())
	}
}

func TestCleanupAfterKilledHolder(t *testing.T) {
	testenv.RequireRoot(t)
	m, dir := newManager(t, Options{})
	v := acquire(t, m, Request{Repo: "r", Name: "n"})
	writeFile(t, filepath.Join(v.Path(), "keep"), "x")
	release(t, v, true)
	snap := leakcheck.Take(t, dir)

	h := startHolder(t, dir, "private", "shared")
	if !mount.IsMountpoint(h.paths[0]) {
		t.Fatalf("holder's private overlay %s is not mounted", h.paths[0])
	}
	// While the holder lives, Cleanup and Prune leave its things alone.
	if err := m.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if removed, _ := m.Prune(context.Background(), 0); len(removed) != 0 || !mount.IsMountpoint(h.paths[0]) {
		t.Fatalf("Cleanup/Prune touched a live holder's volume (removed %v)", removed)
	}
	h.cmd.Process.Kill()
	h.cmd.Wait()
	if !mount.IsMountpoint(h.paths[0]) {
		t.Fatal("the kill itself removed the mount; the test proves nothing")
	}
	if err := m.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if mount.IsMountpoint(h.paths[0]) {
		t.Errorf("overlay %s still mounted after Cleanup", h.paths[0])
	}
	list, _ := m.List()
	if len(list) != 1 || list[0].InUse {
		t.Errorf("after Cleanup: %+v, want one idle volume", list)
	}
	snap.Check(t)
}

func TestCrashLeftovers(t *testing.T) {
	m, _ := newManager(t, Options{})
	req := Request{Repo: "r", Name: "n"}
	id := VolumeID(req.Repo, req.Name, req.Key)
	// A process killed mid-creation: data (and a partial restore) but no
	// metadata. It was never handed out, so it is not a warm cache.
	writeFile(t, filepath.Join(m.volDir(id), "data/half-written"), "x")
	writeFile(t, filepath.Join(m.volDir(id), "data.partial/more"), "x")
	if list, _ := m.List(); len(list) != 0 {
		t.Errorf("List shows an incomplete volume: %+v", list)
	}
	v := acquire(t, m, req)
	if v.Hit() || !isEmptyDir(v.Path()) {
		t.Errorf("incomplete volume handed out as warm (Hit=%v)", v.Hit())
	}
	writeFile(t, filepath.Join(v.Path(), "good"), "x")
	release(t, v, true)
	// An interrupted eviction and a stale partial restore are removed by
	// Cleanup; the complete volume stays.
	writeFile(t, filepath.Join(m.dir, "vols", "other.evicting/data/x"), "x")
	writeFile(t, filepath.Join(m.volDir(id), "data.partial/more"), "x")
	if err := m.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(m.dir, "vols", "other.evicting"), filepath.Join(m.volDir(id), "data.partial")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after Cleanup: %v", p, err)
		}
	}
	v = acquire(t, m, req)
	if !v.Hit() || readFile(t, filepath.Join(v.Path(), "good")) != "x" {
		t.Error("Cleanup damaged a complete volume")
	}
	release(t, v, true)
}
