package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/agent/image"
	"github.com/jobrun/jobrun/cache"
)

// budgetJobs are n jobs, one after the other, each filling a cache of its
// own with 1 MiB.
func budgetJobs(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "job \"j%d\" {\n  image = \"IMAGE\"\n  network = \"none\"\n", i)
		if i > 0 {
			fmt.Fprintf(&b, "  needs = [\"j%d\"]\n", i-1)
		}
		fmt.Fprintf(&b, "  cache \"c%d\" { path = \"/c\" }\n  step \"fill\" { run = \"dd if=/dev/urandom of=/c/blob bs=1024 count=1024 2>/dev/null && echo filled\" }\n}\n", i)
	}
	return b.String()
}

func cacheUse(t *testing.T, m *cache.Manager) (names []string, total int64) {
	t.Helper()
	vols, err := m.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols {
		names = append(names, v.Name)
		total += v.Size
	}
	return names, total
}

// TestLocalCacheBudgetKeepsUnder: five real jobs, each filling a cache of
// its own with 1 MiB, over a 2.5 MiB --cache-budget: every job succeeds
// and the caches end under the budget, the newest kept. A volume another
// job holds throughout is never evicted, even over the budget, and goes
// once released.
func TestLocalCacheBudgetKeepsUnder(t *testing.T) {
	file := project(t, budgetJobs(5), map[string]string{})
	h := newTestHost(t)
	ctx := context.Background()
	m, err := cache.Open(filepath.Join(h.state, "caches"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const budget = 2<<20 + 1<<19
	r := h.local(t, file, "--cache-budget", "2.5MiB", "--parallel", "1")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	if n := strings.Count(r.out, "| filled"); n != 5 {
		t.Errorf("%d jobs filled their cache, want 5", n)
	}
	names, total := cacheUse(t, m)
	if total > budget || len(names) != 2 || names[0] != "c4" || names[1] != "c3" {
		t.Errorf("caches after the run: %v, %d bytes; want [c4 c3] within %d", names, total, budget)
	}

	// A volume held by another job throughout, alone over the budget.
	held, err := m.Acquire(ctx, cache.Request{Repo: "example.com/other", Name: "held"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(held.Path(), "big"), bytes.Repeat([]byte{7}, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	r = h.local(t, file, "--cache-budget", "2.5MiB", "--parallel", "1", "--job", "j0")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	if _, err := os.Stat(filepath.Join(held.Path(), "big")); err != nil {
		t.Errorf("the held volume lost its content: %v", err)
	}
	if names, _ := cacheUse(t, m); !slices.Contains(names, "held") {
		t.Errorf("caches %v: the held volume was evicted", names)
	}
	if err := held.Release(ctx, true); err != nil {
		t.Fatal(err)
	}
	// Released (3 MiB, alone over the budget), the next job's sweep evicts it.
	r = h.local(t, file, "--cache-budget", "2.5MiB", "--parallel", "1", "--job", "j1")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	names, total = cacheUse(t, m)
	if slices.Contains(names, "held") || total > budget {
		t.Errorf("after release: caches %v, %d bytes; want held evicted, within %d", names, total, budget)
	}
}

// TestLocalImageBudgetNeverFailsJobs: with a 1-byte --image-budget every
// job's end evicts its image, yet every job succeeds (the next resolves
// it again); an image a live snapshot holds is never evicted.
func TestLocalImageBudgetNeverFailsJobs(t *testing.T) {
	file := project(t, budgetJobs(3), map[string]string{})
	h := newTestHost(t)
	ctx := context.Background()
	r := h.local(t, file, "--image-budget", "1B", "--parallel", "1")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	// Evicted after each job, the image is unpacked again by the next.
	if n := strings.Count(r.err, ": done in"); n != 3 {
		t.Errorf("the image was unpacked %d times, want once for each of 3 jobs:\n%s", n, r.err)
	}
	st, err := image.Open(filepath.Join(h.state, "images"), image.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if imgs, _ := st.List(); len(imgs) != 0 {
		t.Errorf("%d images kept over a 1-byte budget", len(imgs))
	}
	// Held: a live snapshot of the image keeps it through the sweeps.
	img, err := st.Resolve(ctx, busybox(t), "")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := st.Snapshot(ctx, img, "held-by-test")
	if err != nil {
		t.Fatal(err)
	}
	r = h.local(t, file, "--image-budget", "1B", "--job", "j0")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	if imgs, _ := st.List(); len(imgs) != 1 {
		t.Errorf("%d images while a snapshot holds busybox, want 1", len(imgs))
	}
	if err := snap.Remove(); err != nil {
		t.Fatal(err)
	}
	// Positive control: released, it goes at the next sweep.
	r = h.local(t, file, "--image-budget", "1B", "--job", "j0")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	if imgs, _ := st.List(); len(imgs) != 0 {
		t.Errorf("%d images after the snapshot was removed, want 0", len(imgs))
	}
}

// TestLocalBudgetFlagsBad: a bad budget is a usage error naming the flag.
func TestLocalBudgetFlagsBad(t *testing.T) {
	file := project(t, budgetJobs(1), map[string]string{})
	h := newTestHost(t)
	for flag, val := range map[string]string{"--cache-budget": "lots", "--image-budget": "150%", "--min-free": "-1GiB"} {
		r := h.local(t, file, flag, val)
		if r.code != 2 || !strings.Contains(r.err, flag+":") {
			t.Errorf("%s %s: exit %d, %q; want a usage error naming the flag", flag, val, r.code, r.err)
		}
	}
}
