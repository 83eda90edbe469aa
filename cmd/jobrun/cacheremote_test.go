package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/miniotest"
)

// remoteJobs is a job for the agent labelled label whose cache "deps"
// (key "v1") says whether it arrived warm, and fills it when cold; with
// fresh, it also writes a second cache whose key no run used before.
func remoteJobs(image, label string, fresh bool) string {
	extra := ""
	if fresh {
		extra = `
  cache "fresh" {
    path = "/fresh"
    key  = "f1"
  }
  step "fresh" { run = "echo new > /fresh/f && echo deps changed >> /deps/changes" }`
	}
	return fmt.Sprintf(`job "deps" {
  image   = %q
  agent   = [%q]
  network = "none"
  cache "deps" {
    path = "/deps"
    key  = "v1"
  }
  step "deps" { run = "if [ -e /deps/warm ]; then echo CACHE-HIT; else echo CACHE-MISS; dd if=/dev/urandom of=/deps/warm bs=1024 count=2048 2>/dev/null; fi" }%s
}
`, image, label, extra)
}

// TestCacheFollowsBranchAcrossAgents: two real agents (own state dirs)
// share one MinIO bucket as their cache remote. A job on agent A warms a
// cache and uploads it; the branch's next job, on agent B, restores it
// from the bucket (its log says so) and hits, and uploads nothing (the
// content did not change). An untrusted run on B that changes one cache
// and fills a new one leaves the bucket as it was; the same job trusted
// (the positive control) uploads both.
func TestCacheFollowsBranchAcrossAgents(t *testing.T) {
	image := busybox(t)
	cfg := miniotest.Config(t)
	bin := buildJobrun(t)
	ctx := context.Background()
	t.Setenv("JOBRUN_S3_ACCESS_KEY", cfg.AccessKey)
	t.Setenv("JOBRUN_S3_SECRET_KEY", cfg.SecretKey)
	remote := "s3://" + cfg.Bucket + "/caches?endpoint=" + url.QueryEscape(cfg.Endpoint)

	p := startPool(t, bin, "10s")
	agents := map[string]*daemon{}
	for _, name := range []string{"agent-a", "agent-b"} {
		h := agentHost(t)
		conf := fmt.Sprintf("cache {\n  remote = %q\n}\n", remote)
		if err := os.WriteFile(filepath.Join(h.state, "config.hcl"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		agents[name] = p.startAgent(t, bin, h, name, "--labels", name)
	}
	logs := p.logs(agents)
	runOn := func(label string, untrusted, fresh bool) (*api.Run, string) {
		t.Helper()
		nr, err := p.c.CreateRun(ctx, api.NewRun{Repo: "example.com/cachepool", Branch: "main",
			Source: remoteJobs(image, label, fresh), Untrusted: untrusted})
		if err != nil {
			t.Fatal(err)
		}
		r := waitRunDone(t, p.c, nr.ID, logs)
		l := runLog(t, p.c, r)
		if r.Status != api.Succeeded {
			t.Fatalf("run %d on %s: %s\n%s%s", r.ID, label, r.Status, l, logs())
		}
		return r, l
	}
	archives := func() []string {
		var out []string
		for _, o := range miniotest.Objects(t, cfg) {
			if strings.HasSuffix(o, ".tar.s2") {
				out = append(out, o)
			}
		}
		return out
	}

	// A: cold, then saved to the bucket.
	_, l := runOn("agent-a", false, false)
	if !strings.Contains(l, "CACHE-MISS") {
		t.Fatalf("first job on A was not cold:\n%s", l)
	}
	warmed := archives()
	if len(warmed) != 1 || !strings.HasPrefix(warmed[0], "caches/") {
		t.Fatalf("after A's job the bucket holds %v, want one cache archive under caches/%s", warmed, logs())
	}

	// B: restored from the bucket, a hit, nothing uploaded.
	_, l = runOn("agent-b", false, false)
	if !strings.Contains(l, "CACHE-HIT") || !strings.Contains(l, "cache deps: restored from remote in ") {
		t.Fatalf("B's job did not restore the cache from the bucket and hit:\n%s%s", l, logs())
	}
	if got := archives(); !slices.Equal(got, warmed) {
		t.Errorf("B's unchanged cache was uploaded: bucket %v, was %v", got, warmed)
	}

	// Untrusted on B: changes deps, fills a new cache; the bucket stays.
	before := miniotest.Objects(t, cfg)
	_, l = runOn("agent-b", true, true)
	if !strings.Contains(l, "CACHE-HIT") || !strings.Contains(l, "(private)") {
		t.Fatalf("the untrusted job did not read the cache privately:\n%s", l)
	}
	if got := miniotest.Objects(t, cfg); !slices.Equal(got, before) {
		t.Errorf("an untrusted run changed the bucket: %v, was %v", got, before)
	}

	// Positive control: the same job trusted uploads both caches.
	runOn("agent-b", false, true)
	if got := archives(); len(got) != 3 {
		t.Errorf("after the trusted run the bucket holds %v, want deps twice (changed) and fresh once", got)
	}
}

// TestLocalCacheRemoteReadOnlyByDefault: `jobrun local --cache-remote`
// restores a cache another host saved, and never uploads, even when the
// job changed it, unless --cache-upload is given (the positive control).
func TestLocalCacheRemoteReadOnlyByDefault(t *testing.T) {
	cfg := miniotest.Config(t)
	t.Setenv("JOBRUN_S3_ACCESS_KEY", cfg.AccessKey)
	t.Setenv("JOBRUN_S3_SECRET_KEY", cfg.SecretKey)
	remote := "s3://" + cfg.Bucket + "/local?endpoint=" + url.QueryEscape(cfg.Endpoint)
	file := project(t, `
job "deps" {
  image   = "IMAGE"
  network = "none"
  cache "deps" {
    path = "/deps"
    key  = "v1"
  }
  step "deps" { run = "if [ -e /deps/warm ]; then echo CACHE-HIT; date >> /deps/changes; else echo CACHE-MISS; echo x > /deps/warm; fi" }
}
`, map[string]string{})
	count := func() int { return len(miniotest.Objects(t, cfg)) }

	first, second := newTestHost(t), newTestHost(t)
	r := first.local(t, file, "--cache-remote", remote, "--cache-upload")
	if r.code != 0 || !strings.Contains(r.out, "CACHE-MISS") || count() != 1 {
		t.Fatalf("warming with --cache-upload: exit %d, %d objects", r.code, count())
	}
	r = second.local(t, file, "--cache-remote", remote)
	if r.code != 0 || !strings.Contains(r.out, "CACHE-HIT") || !strings.Contains(r.out, "cache deps: restored from remote in ") {
		t.Fatalf("second host: exit %d, want a restore and a hit", r.code)
	}
	if n := count(); n != 1 {
		t.Errorf("a read-only run changed the bucket: %d objects", n)
	}
	r = second.local(t, file, "--cache-remote", remote, "--cache-upload")
	if r.code != 0 || !strings.Contains(r.out, "CACHE-HIT") {
		t.Fatalf("with --cache-upload: exit %d", r.code)
	}
	if n := count(); n != 2 {
		t.Errorf("--cache-upload did not save the changed cache: %d objects, want 2", n)
	}
	r = second.local(t, file, "--cache-remote", "https://"+cfg.Bucket+"/local")
	if r.code == 0 || !strings.Contains(r.err, "cache remote") {
		t.Errorf("a bad --cache-remote: exit %d, %q; want an error naming the cache remote", r.code, r.err)
	}
}
