package agent

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/jobrun/jobrun/cache"
	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/testenv"
	"github.com/jobrun/jobrun/jobs"
)

// In a user namespace, a job's plain cache directories (shared and locked
// volumes, scratch dirs without a cache manager) are bound idmapped; a
// private volume is an overlay built for the range, bound as it is.
// Without one nothing is idmapped.
func TestCacheMountsIDMapForRange(t *testing.T) {
	testenv.RequireRoot(t)
	m, err := cache.Open(filepath.Join(t.TempDir(), "caches"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := idmap.NewUserns(idmap.Mapping{UID: 300000, GID: 300000, Size: 65536})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	j := &Job{Repo: "example.com/app", Job: &jobs.Job{Caches: []jobs.Cache{
		{Name: "s", Path: "/s", Sharing: jobs.Sharing(cache.Shared)},
		{Name: "l", Path: "/l", Sharing: jobs.Sharing(cache.Locked)},
		{Name: "p", Path: "/p", Sharing: jobs.Sharing(cache.Private)},
	}}}
	l := newJobLog("job", &collect{}, nil, 0)
	for _, tc := range []struct {
		caches *cache.Manager
		u      *idmap.Userns
		want   map[string]bool
	}{
		{m, u, map[string]bool{"/s": true, "/l": true, "/p": false}},
		{m, nil, map[string]bool{"/s": false, "/l": false, "/p": false}},
		{nil, u, map[string]bool{"/s": true, "/l": true, "/p": true}}, // scratch dirs
	} {
		r := &Runner{Caches: tc.caches, WorkDir: t.TempDir()}
		vols, mounts, err := r.acquireCaches(context.Background(), j, t.TempDir(), tc.u, l)
		if err != nil {
			t.Fatal(err)
		}
		for _, mt := range mounts {
			if mt.IDMap != tc.want[mt.Target] {
				t.Errorf("caches %v, userns %v: %s (from %s) IDMap = %v", tc.caches != nil, tc.u != nil, mt.Target, mt.Source, mt.IDMap)
			}
		}
		if len(mounts) != 3 {
			t.Errorf("got %d mounts, want 3", len(mounts))
		}
		for _, v := range vols {
			if err := v.release(); err != nil {
				t.Error(err)
			}
		}
	}
}
