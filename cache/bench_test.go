package cache

import (
	"context"
	"testing"

	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/testenv"
)

// BenchmarkPrivate measures Acquire + Release of a private volume, with
// and without a user namespace (the idmapped lower's cost).
func BenchmarkPrivate(b *testing.B) {
	testenv.RequireRoot(b)
	u, err := idmap.NewUserns(rangeA)
	if err != nil {
		b.Fatal(err)
	}
	defer u.Close()
	for _, tc := range []struct {
		name string
		u    *idmap.Userns
	}{{"plain", nil}, {"userns", u}} {
		b.Run(tc.name, func(b *testing.B) {
			m, err := Open(b.TempDir()+"/caches", Options{})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			req := Request{Repo: "r", Name: "n", Sharing: Private, Userns: tc.u}
			for b.Loop() {
				v, err := m.Acquire(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				if err := v.Release(ctx, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
