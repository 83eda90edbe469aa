package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jobrun/jobrun/agent/image"
	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/testenv"
)

// soakJobs is one run of n independent jobs for the agent labelled
// label, alternating between images a and b; job i writes blob bytes
// into a cache of its own whose key no other job uses.
func soakJobs(n int, a, b, label string, blob int) string {
	var s strings.Builder
	for i := range n {
		img := a
		if i%2 == 1 {
			img = b
		}
		fmt.Fprintf(&s, `job "j%03d" {
  image   = %q
  agent   = [%q]
  network = "none"
  cache "c%03d" {
    path = "/c"
    key  = "k%03d"
  }
  step "fill" { run = "dd if=/dev/urandom of=/c/blob bs=1024 count=%d 2>/dev/null && echo filled" }
}
`, i, img, label, i, i, blob/1024)
	}
	return s.String()
}

// onDisk is the bytes on disk under dir, hard links counted once and
// other filesystems (a live job's mounts) left out, as du -x counts.
func onDisk(dir string) int64 {
	var root syscall.Stat_t
	if err := syscall.Stat(dir, &root); err != nil {
		return 0
	}
	seen := map[uint64]bool{}
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || p != dir {
				return nil // removed while walking
			}
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if st.Dev != root.Dev {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if st.Nlink > 1 && !d.IsDir() {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		n += st.Blocks * 512
		return nil
	})
	return n
}

// imageStore resolves refs into a new image store and returns its disk
// use and the part of it the budget counts: its blobs, unpacked layers
// and flattened trees, without the store's own directories and records.
func imageStore(t *testing.T, refs ...string) (disk, entries int64) {
	t.Helper()
	dir := t.TempDir()
	st, err := image.Open(dir, image.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range refs {
		if _, err := st.Resolve(context.Background(), ref, ""); err != nil {
			t.Fatalf("resolve %s: %v", ref, err)
		}
	}
	return onDisk(dir), storeEntries(dir)
}

// storeEntries is what an image store's budget counts: its blobs,
// unpacked layers and flattened trees.
func storeEntries(dir string) int64 {
	var n int64
	for _, sub := range []string{"blobs/sha256", "layers", "flat"} {
		des, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, de := range des {
			n += onDisk(filepath.Join(dir, sub, de.Name()))
		}
	}
	return n
}

// TestAgentBudgetSoak: one real agent whose config.hcl sets small cache
// and image budgets runs 200 jobs, one at a time, each filling a new
// cache (a key no job used before) with 256 KiB and alternating between
// two images, while a sampler measures the caches and images directories
// every 100 ms. Every job succeeds; no sample exceeds its budget by more
// than the eviction design allows (see bound below); evictions happened
// (the positive control: 200 × 256 KiB is 12.5 times the cache budget,
// and each image change crowds the other out); and the host's leak
// checks pass.
func TestAgentBudgetSoak(t *testing.T) {
	imgA := busybox(t)
	imgB := "oci-layout:" + testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES_BUSYBOX_USER", "test images built by scripts/testimages.sh") + ":latest"
	const (
		jobs        = 200
		blob        = 256 << 10
		cacheBudget = 4 << 20
	)
	// One job's worth of image store: the larger image alone in a store.
	diskA, entA := imageStore(t, imgA)
	diskB, entB := imageStore(t, imgB)
	_, entAB := imageStore(t, imgA, imgB)
	oneImage, single := max(diskA, diskB), max(entA, entB)
	if entAB <= single {
		t.Fatalf("the two images share everything (%d bytes together, %d alone): no budget holds one and not both", entAB, single)
	}
	// Room for either image alone, not for both (the two share busybox's
	// layer): every change of image evicts the other.
	imageBudget := (single + entAB) / 2

	bin := buildJobrun(t)
	p := startPool(t, bin, "30s")
	h := agentHost(t)
	conf := fmt.Sprintf("cache {\n  budget = \"%dB\"\n}\nimage {\n  budget = \"%dB\"\n}\n", cacheBudget, imageBudget)
	if err := os.WriteFile(filepath.Join(h.state, "config.hcl"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	a := p.startAgent(t, bin, h, "soak", "--labels", "soak", "--jobs", "1")
	logs := p.logs(map[string]*daemon{"agent": a})

	// The sampler.
	var (
		mu                 sync.Mutex
		samples            int
		maxCache, maxImage int64
	)
	caches, images := filepath.Join(h.state, "caches"), filepath.Join(h.state, "images")
	sctx, stopSampler := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			c, i := onDisk(caches), onDisk(images)
			mu.Lock()
			samples++
			maxCache, maxImage = max(maxCache, c), max(maxImage, i)
			mu.Unlock()
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	start := time.Now()
	ctx := context.Background()
	nr, err := p.c.CreateRun(ctx, api.NewRun{Repo: "example.com/soak", Branch: "main",
		Source: soakJobs(jobs, imgA, imgB, "soak", blob)})
	if err != nil {
		t.Fatal(err)
	}
	// A bound on the whole soak, not a timing assertion: a stuck agent
	// fails here instead of at the go test timeout.
	deadline := time.Now().Add(5 * time.Minute)
	var r *api.Run
	for {
		if r, err = p.c.Run(ctx, nr.ID); err != nil {
			t.Fatal(err)
		}
		if api.Final(r.Status) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %d still %s after 5 minutes%s", r.ID, r.Status, logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	elapsed := time.Since(start)
	stopSampler()
	wg.Wait()

	ok := 0
	for _, j := range r.Jobs {
		if j.Status == api.Succeeded {
			ok++
		} else {
			t.Errorf("job %s: %s (%s)", j.Name, j.Status, j.Reason)
		}
	}
	if len(r.Jobs) != jobs || ok != jobs || r.Status != api.Succeeded {
		t.Fatalf("run %s: %d of %d jobs succeeded, want all %d%s", r.Status, ok, len(r.Jobs), jobs, logs())
	}

	// The bound. Eviction runs beside the jobs: a job's end kicks a sweep
	// (Runner.AfterJob → Housekeeper.Kick) and the next job may start
	// before it has run; a sweep brings the released caches down to the
	// budget, counting each volume at its size measured at release, while
	// the live volume (held, never evicted) is still filling. Kicks
	// coalesce, so at a sample the caches hold at most: the budget, the
	// job just finished whose sweep is still due, and the live job — two
	// jobs' worth of data over the budget. On top of that, each volume's
	// bookkeeping is not in its measured size (that is its data
	// directory's): one 4 KiB block each for the volume's directory, its
	// users directory and meta.json, for the volumes the budget keeps
	// plus the two.
	// The image store is bounded the same way: after a sweep it fits the
	// budget (one image fits, and the live one is never evicted), and
	// between sweeps the finished job's image and the next one's may both
	// be present — two images' worth over the budget at most.
	const perVolume = 3 * 4096
	cacheBound := int64(cacheBudget + 2*blob + (cacheBudget/blob+2)*perVolume)
	imageBound := imageBudget + 2*oneImage
	mu.Lock()
	t.Logf("soak: %d jobs in %s; %d samples; caches max %d bytes (budget %d, bound %d); images max %d bytes (budget %d, one image %d, bound %d)",
		jobs, elapsed.Round(time.Millisecond), samples, maxCache, cacheBudget, cacheBound, maxImage, imageBudget, oneImage, imageBound)
	if maxCache > cacheBound {
		t.Errorf("caches reached %d bytes on disk, over the bound %d (budget %d)", maxCache, cacheBound, cacheBudget)
	}
	if maxImage > imageBound {
		t.Errorf("the image store reached %d bytes on disk, over the bound %d (budget %d)", maxImage, imageBound, imageBudget)
	}
	mu.Unlock()
	// Positive controls: far more was written than the budgets hold, so
	// the bounds held because eviction ran.
	if written := int64(jobs * blob); written <= 3*cacheBudget {
		t.Fatalf("the soak wrote %d bytes of caches, not over 3× the budget %d", written, cacheBudget)
	}
	l := a.log()
	cacheEvictions := strings.Count(l, "cache budget: evicted volumes")
	imageEvictions := strings.Count(l, "image budget: evicted image")
	t.Logf("soak: %d cache sweeps evicted volumes, %d images evicted", cacheEvictions, imageEvictions)
	if cacheEvictions == 0 {
		t.Errorf("the agent evicted no cache volume%s", logs())
	}
	if imageEvictions == 0 {
		t.Errorf("the agent evicted no image%s", logs())
	}
	// At rest, after the last job's sweep, both stores fit their budgets,
	// counted as the sweeps count, and on disk hold no more than that and
	// the stores' own bookkeeping: nothing piles up over 200 jobs. (Polled
	// because the last sweep runs beside the run's end; the deadline only
	// bounds the wait.)
	var cacheData, imageData int64
	for end := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		cacheData, imageData = 0, storeEntries(images)
		vs, _ := os.ReadDir(filepath.Join(caches, "vols"))
		for _, v := range vs {
			cacheData += onDisk(filepath.Join(caches, "vols", v.Name(), "data"))
		}
		if cacheData <= cacheBudget && imageData <= imageBudget || time.Now().After(end) {
			break
		}
	}
	if cacheData > cacheBudget || imageData > imageBudget {
		t.Errorf("at rest: caches hold %d bytes of data (budget %d), images %d bytes (budget %d)", cacheData, cacheBudget, imageData, imageBudget)
	}
	cacheRest, imageRest := onDisk(caches), onDisk(images)
	// Bookkeeping: the caches dir and its locks, private and vols dirs;
	// per volume its directory, users directory and metadata. The image
	// store's is what a store with one image has besides the image, and
	// a block for each of its directories (blobs, blobs/sha256, layers,
	// flat, images, locks, tmp), which keep blocks they grew while two
	// images were in.
	cacheRestBound := cacheData + 4*4096 + int64(cacheBudget/blob+1)*perVolume
	imageRestBound := imageData + max(diskA-entA, diskB-entB) + 7*4096
	t.Logf("soak: at rest caches %d bytes on disk (%d data, bound %d), images %d (%d counted, bound %d)",
		cacheRest, cacheData, cacheRestBound, imageRest, imageData, imageRestBound)
	if cacheRest > cacheRestBound {
		t.Errorf("at rest the caches dir holds %d bytes, over %d: something piles up", cacheRest, cacheRestBound)
	}
	if imageRest > imageRestBound {
		t.Errorf("at rest the image store holds %d bytes, over %d: something piles up", imageRest, imageRestBound)
	}

	// An evicted volume leaves nothing behind, its guard lock file
	// included: every lock names a volume still kept (and some are).
	vols, err := os.ReadDir(filepath.Join(caches, "vols"))
	if err != nil || len(vols) == 0 {
		t.Errorf("the caches dir keeps no volume (%v)", err)
	}
	kept := map[string]bool{}
	for _, v := range vols {
		kept[v.Name()] = true
	}
	locks, _ := os.ReadDir(filepath.Join(caches, "locks"))
	var orphans []string
	for _, l := range locks {
		if !kept[strings.TrimSuffix(l.Name(), ".lock")] {
			orphans = append(orphans, l.Name())
		}
	}
	if len(orphans) > 0 {
		t.Errorf("%d lock files of evicted volumes left behind (%d volumes kept), e.g. %s", len(orphans), len(vols), orphans[0])
	}
	if samples < 10 {
		t.Errorf("only %d samples of disk use", samples)
	}
}
