package scheduler

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/git"
)

// uploadPack posts a raw git-upload-pack request wanting sha to the
// lease's mirror route.
func uploadPack(t *testing.T, base, path, token, sha string) (int, string) {
	t.Helper()
	body := fmt.Sprintf("%04xwant %s ofs-delta\n0000%04xdone\n", 4+len("want ")+40+len(" ofs-delta\n"), sha, 4+len("done\n"))
	req, _ := http.NewRequest("POST", base+path+"/git-upload-pack", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-git-upload-pack-request")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestUntrustedLeaseCarriesNoForgeCredentials (issue #16, defect 9): an
// untrusted run's lease carries neither the repository's forge token nor
// its SSH key; its agent fetches the commit from the server's mirror
// with its own token while it holds the lease, and gets that commit
// only. A trusted run's lease still carries the token (the positive
// control).
func TestUntrustedLeaseCarriesNoForgeCredentials(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		base, _ := triggerServer(t, open(), nil)
		ctx := context.Background()
		repo := newForgeRepo(t, pushMainOnly)
		const forgeToken = "forge-token-never-for-forks"
		addRepo(t, base, api.NewRepo{Name: "hello", CloneURL: repo.bare, Token: forgeToken})
		fork := repo.push("fork", map[string]string{"fork.txt": "from a fork"})
		secret := repo.push("main", map[string]string{"private.txt": "on main only, after the fork"})
		// The server mirrors main (a trusted manual run) and the fork's
		// commit (the run of its pull request).
		if _, err := admin(base).Trigger(ctx, "hello", api.TriggerRun{Branch: "main"}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin(base).Trigger(ctx, "hello", api.TriggerRun{Branch: "fork"}); err != nil {
			t.Fatal(err)
		}
		a, reg := register(t, base, "a", 4)
		other, _ := register(t, base, "other", 1)
		for range 2 {
			l, err := a.Lease(ctx, reg.ID, 5*time.Second)
			if err != nil || l == nil || l.Checkout == nil {
				t.Fatalf("lease: %+v %v", l, err)
			}
			if l.Checkout.Token != forgeToken || l.Checkout.Mirror != "" {
				t.Fatalf("a trusted lease's checkout %+v: want the forge token, no mirror route", l.Checkout)
			}
		}
		if _, err := admin(base).CreateRun(ctx, api.NewRun{Repo: "hello", Branch: "pull/7", Commit: fork, CloneURL: repo.bare,
			Source: pushMainOnly, Untrusted: true}); err != nil {
			t.Fatal(err)
		}
		l, err := a.Lease(ctx, reg.ID, 5*time.Second)
		if err != nil || l == nil || l.Checkout == nil || !l.Untrusted {
			t.Fatalf("untrusted lease: %+v %v", l, err)
		}
		if l.Checkout.Token != "" || l.Checkout.SSHKey != "" || l.Checkout.Mirror == "" {
			t.Fatalf("an untrusted lease's checkout %+v: want no credentials and the mirror route", l.Checkout)
		}

		// The agent's fetch, as agent/checkout.go does it.
		dir := filepath.Join(t.TempDir(), "m.git")
		o := git.MirrorOptions{Auth: git.Auth{Bearer: a.Token}, Refs: []string{git.CommitRef}, OnlyRefs: true}
		if err := git.Mirror(ctx, dir, base+l.Checkout.Mirror, o); err != nil {
			t.Fatalf("fetch from the server's mirror with the lease: %v", err)
		}
		if !git.HasCommit(dir, fork) {
			t.Fatal("the fetched mirror lacks the leased commit")
		}
		if git.HasCommit(dir, secret) {
			t.Fatal("the fetch brought a commit of another branch")
		}
		// Nobody else fetches there: no token, another agent's.
		if err := git.Mirror(ctx, filepath.Join(t.TempDir(), "x.git"), base+l.Checkout.Mirror, git.MirrorOptions{Refs: []string{git.CommitRef}, OnlyRefs: true}); err == nil {
			t.Fatal("fetch without a token succeeded")
		}
		if code, _ := uploadPack(t, base, l.Checkout.Mirror, other.Token, fork); code != http.StatusGone {
			t.Fatalf("upload-pack with another agent's token: %d, want 410", code)
		}
		// The lease holder gets the commit and nothing else by hash.
		if code, body := uploadPack(t, base, l.Checkout.Mirror, a.Token, secret); code != http.StatusBadRequest {
			t.Fatalf("upload-pack wanting another commit: %d %q, want 400", code, body)
		}
		if code, body := uploadPack(t, base, l.Checkout.Mirror, a.Token, fork); code != http.StatusOK || !strings.Contains(body, "PACK") {
			t.Fatalf("upload-pack wanting the leased commit: %d, want 200 with a pack", code)
		}
		// The lease ends: the route closes.
		if err := a.Finish(ctx, l.Attempt, api.Result{Status: api.Succeeded}); err != nil {
			t.Fatal(err)
		}
		if code, _ := uploadPack(t, base, l.Checkout.Mirror, a.Token, fork); code != http.StatusGone {
			t.Fatalf("upload-pack after the lease ended: %d, want 410", code)
		}
	})
}
