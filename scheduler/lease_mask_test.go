package scheduler

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
)

const maskJobs = `
job "uses" {
  image   = "busybox"
  secrets = ["TOKEN"]
  step "s" { run = "true" }
}
job "other" {
  image = "busybox"
  step "s" { run = "true" }
}
`

// TestLeaseMasksRunSecrets: a job of a run gets, for masking only, the
// values of the secrets the run's other jobs name (one may reach it
// through an artifact), never in its secrets; the job naming a secret
// gets it as before; an untrusted run gets neither.
func TestLeaseMasksRunSecrets(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		base := serve(t, open(), nil)
		ctx := context.Background()
		ad := admin(base)
		const value = "run-s3cr3t-77"
		if err := ad.SetSecret(ctx, "app", "TOKEN", api.SetSecret{Value: value}); err != nil {
			t.Fatal(err)
		}
		if err := ad.SetSecret(ctx, "app", "UNNAMED", api.SetSecret{Value: "nobody-names-me"}); err != nil {
			t.Fatal(err)
		}
		a, reg := register(t, base, "a", 4)
		leases := func(nr api.NewRun) map[string]*api.Lease {
			t.Helper()
			if _, err := ad.CreateRun(ctx, nr); err != nil {
				t.Fatal(err)
			}
			out := map[string]*api.Lease{}
			for range 2 {
				l, err := a.Lease(ctx, reg.ID, 5*time.Second)
				if err != nil || l == nil {
					t.Fatalf("lease: %v %v", l, err)
				}
				out[l.Job] = l
			}
			return out
		}
		ls := leases(api.NewRun{Repo: "app", Branch: "main", Source: maskJobs})
		if u := ls["uses"]; u.Secrets["TOKEN"] != value || len(u.Secrets) != 1 || len(u.Mask) != 0 {
			t.Errorf("job naming TOKEN: secrets %v, mask %v", u.Secrets, u.Mask)
		}
		if o := ls["other"]; len(o.Secrets) != 0 || !slices.Equal(o.Mask, []string{value}) {
			t.Errorf("job not naming TOKEN: secrets %v, mask %v; want no secrets and TOKEN's value to mask", o.Secrets, o.Mask)
		}
		for name, l := range leases(api.NewRun{Repo: "app", Branch: "main", Source: maskJobs, Untrusted: true}) {
			if len(l.Secrets) != 0 || len(l.Mask) != 0 {
				t.Errorf("untrusted job %s: secrets %v, mask %v", name, l.Secrets, l.Mask)
			}
		}
	})
}
