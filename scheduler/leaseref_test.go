package scheduler

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/git"
)

// TestMergeRequestLeaseCarriesFetchedRef delivers a GitLab merge request
// to a repository registered without --forge: the server fetches
// refs/merge-requests/N/head, and the lease must send the agent to that
// ref (stored with the run), not to GitHub's refs/pull/N/head, which
// the repository does not have. The agent's fetch (git.Mirror with the
// lease's ref alone, as agent.Pool.fetch does it) must reach the commit.
// A fork's merge request still goes through the server's mirror.
func TestMergeRequestLeaseCarriesFetchedRef(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		base, _ := triggerServer(t, open(), nil)
		repo := newForgeRepo(t, pushMainOnly)
		addRepo(t, base, api.NewRepo{Name: "group/hello", CloneURL: repo.bare, Secret: hookSecret})
		mr := repo.push("mr", map[string]string{"x": "y"})
		repo.w.Git("push", "-q", "origin", mr+":refs/merge-requests/3/head")
		repo.w.Git("push", "-q", "origin", "--delete", "mr") // only the merge request's ref has it
		a, reg := register(t, base, "a", 2)
		ctx := context.Background()
		lease := func(file string) *api.Lease {
			t.Helper()
			if code, msg := deliver(t, base, "gitlab", "group/hello", "Merge Request Hook", payload(t, "gitlab", file, mr, ""), hookSecret); code != 201 {
				t.Fatalf("%s: %d %s", file, code, msg)
			}
			l, err := a.Lease(ctx, reg.ID, 0)
			if err != nil || l == nil {
				t.Fatalf("%s: lease %v %v", file, l, err)
			}
			return l
		}

		l := lease("merge_request-same-nonames.json")
		if l.Untrusted || l.Branch != "pull/3" || l.Commit != mr || l.Checkout == nil || l.Checkout.Ref != "refs/merge-requests/3/head" {
			t.Fatalf("lease of a merge request: %+v checkout %+v; want ref refs/merge-requests/3/head", l, l.Checkout)
		}
		dir := filepath.Join(t.TempDir(), "agent.git")
		o := git.MirrorOptions{Refs: []string{l.Checkout.Ref}, OnlyRefs: true}
		if err := git.Mirror(ctx, dir, l.CloneURL, o); err != nil || !git.HasCommit(dir, l.Commit) {
			t.Fatalf("agent fetch of %s: %v (has commit: %v)", l.Checkout.Ref, err, git.HasCommit(dir, l.Commit))
		}

		// A fork's merge request: untrusted, fetched from the server's
		// mirror with the lease, which serves the commit.
		l = lease("merge_request-fork-nonames.json")
		if !l.Untrusted || l.Checkout == nil || l.Checkout.Mirror == "" || l.Checkout.Token != "" {
			t.Fatalf("lease of a fork's merge request: %+v checkout %+v", l, l.Checkout)
		}
		dir = filepath.Join(t.TempDir(), "untrusted.git")
		o = git.MirrorOptions{Auth: git.Auth{Bearer: a.Token}, Refs: []string{git.CommitRef}, OnlyRefs: true}
		if err := git.Mirror(ctx, dir, base+l.Checkout.Mirror, o); err != nil || !git.HasCommit(dir, l.Commit) {
			t.Fatalf("untrusted fetch from the server's mirror: %v (has commit: %v)", err, git.HasCommit(dir, l.Commit))
		}
	})
}
