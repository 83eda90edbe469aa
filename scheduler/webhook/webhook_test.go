package webhook

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	secret = "test-secret"
	sha    = "7f5c2a8d1e6b4f3a9c0d2e1f4a5b6c7d8e9f0a1b"
)

// TestGitHubPublishedVector checks the example from GitHub's "Validating
// webhook deliveries" documentation verbatim.
func TestGitHubPublishedVector(t *testing.T) {
	const want = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	body, key := []byte("Hello, World!"), []byte("It's a Secret to Everybody")
	if got := Sign(body, key); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	h := http.Header{}
	h.Set("X-Hub-Signature-256", "sha256="+want)
	if err := Verify(GitHub, h, body, key); err != nil {
		t.Fatalf("the published signature does not verify: %v", err)
	}
	if err := Verify(GitHub, h, []byte("Hello, World?"), key); !errors.Is(err, ErrSignature) {
		t.Fatalf("another body verified: %v", err)
	}
}

// delivery makes a signed request of forge for the payload in testdata.
func delivery(t *testing.T, forge, event, file, key string) *http.Request {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", forge, file))
	if err != nil {
		t.Fatal(err)
	}
	return signed(forge, event, body, key)
}

func signed(forge, event string, body []byte, key string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/hooks/"+forge+"/hello", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	switch forge {
	case GitHub:
		r.Header.Set("X-GitHub-Event", event)
		r.Header.Set("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
		r.Header.Set("X-Hub-Signature-256", "sha256="+Sign(body, []byte(key)))
	case GitLab:
		r.Header.Set("X-Gitlab-Event", event)
		r.Header.Set("X-Gitlab-Event-UUID", "13792a34-cac6-4fda-95a8-c58e00a3954e")
		r.Header.Set("X-Gitlab-Token", key)
	case Gitea:
		r.Header.Set("X-Gitea-Event", event)
		r.Header.Set("X-Gitea-Delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473")
		r.Header.Set("X-Gitea-Signature", Sign(body, []byte(key)))
	}
	return r
}

func TestSamples(t *testing.T) {
	for _, c := range []struct {
		forge, event, file string
		want               Event
		fork               bool
	}{
		{GitHub, "push", "push.json", Event{Kind: Push, Ref: "main", Commit: sha, Repo: "octo-org/hello"}, false},
		{GitHub, "push", "push-tag.json", Event{Kind: Tag, Ref: "v1.0.0", Commit: sha}, false},
		{GitHub, "push", "push-delete.json", Event{Kind: Push, Ref: "feature", Deleted: true}, false},
		{GitHub, "pull_request", "pull_request-fork.json", Event{Kind: PullRequest, Ref: "main", Commit: sha}, true},
		{GitHub, "pull_request", "pull_request-same.json", Event{Kind: PullRequest, Ref: "main", Commit: sha}, false},
		{GitHub, "pull_request", "pull_request-closed.json", Event{Ignored: "pull request #8 closed: no new code to run"}, false},
		{GitHub, "ping", "ping.json", Event{Ignored: "ping received"}, false},
		{GitLab, "Push Hook", "push.json", Event{Kind: Push, Ref: "main", Commit: sha, Repo: "group/hello"}, false},
		{GitLab, "Tag Push Hook", "tag_push.json", Event{Kind: Tag, Ref: "v1.0.0", Commit: sha}, false},
		{GitLab, "Push Hook", "push-delete.json", Event{Kind: Push, Ref: "feature", Deleted: true}, false},
		{GitLab, "Merge Request Hook", "merge_request-fork.json", Event{Kind: PullRequest, Ref: "main", Commit: sha}, true},
		{GitLab, "Merge Request Hook", "merge_request-update.json", Event{Kind: PullRequest, Ref: "main", Commit: sha}, false},
		{GitLab, "Merge Request Hook", "merge_request-fork-nonames.json", Event{Kind: PullRequest, Ref: "main", Commit: sha}, true},
		{GitLab, "Merge Request Hook", "merge_request-same-nonames.json", Event{Kind: PullRequest, Ref: "main", Commit: sha}, false},
		{GitLab, "Merge Request Hook", "merge_request-edit.json", Event{Ignored: "pull request #3 update (no new commits): no new code to run"}, false},
		{Gitea, "push", "push.json", Event{Kind: Push, Ref: "main", Commit: sha, Repo: "org/hello"}, false},
		{Gitea, "push", "push-tag.json", Event{Kind: Tag, Ref: "v1.0.0", Commit: sha}, false},
		{Gitea, "push", "push-delete.json", Event{Kind: Push, Ref: "feature", Deleted: true}, false},
		{Gitea, "pull_request", "pull_request-fork.json", Event{Kind: PullRequest, Ref: "main", Commit: sha}, true},
		{Gitea, "pull_request", "pull_request-same.json", Event{Kind: PullRequest, Ref: "main", Commit: sha}, false},
		{Gitea, "issues", "push.json", Event{Ignored: `Gitea event "issues" starts nothing`}, false},
	} {
		t.Run(c.forge+"/"+c.file+"/"+c.event, func(t *testing.T) {
			ev, body, err := Read(delivery(t, c.forge, c.event, c.file, secret), c.forge, []byte(secret), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if len(body) == 0 || ev.Delivery == "" {
				t.Errorf("body %d bytes, delivery %q: want both", len(body), ev.Delivery)
			}
			if ev.Kind != c.want.Kind || ev.Ref != c.want.Ref || ev.Commit != c.want.Commit || ev.Deleted != c.want.Deleted || ev.Ignored != c.want.Ignored {
				t.Errorf("got kind %q ref %q commit %q deleted %v ignored %q; want %q %q %q %v %q",
					ev.Kind, ev.Ref, ev.Commit, ev.Deleted, ev.Ignored, c.want.Kind, c.want.Ref, c.want.Commit, c.want.Deleted, c.want.Ignored)
			}
			if c.want.Repo != "" && ev.Repo != c.want.Repo {
				t.Errorf("repo %q, want %q", ev.Repo, c.want.Repo)
			}
			if ev.Kind == PullRequest {
				if ev.PR.Fork() != c.fork {
					t.Errorf("fork = %v, want %v (head %s, base %s)", ev.PR.Fork(), c.fork, ev.PR.HeadRepo, ev.PR.BaseRepo)
				}
				if !strings.HasPrefix(ev.PR.FetchRef, "refs/") || !strings.HasSuffix(ev.PR.FetchRef, "/head") {
					t.Errorf("fetch ref %q", ev.PR.FetchRef)
				}
			}
			if ev.Kind != "" && !ev.Deleted && ev.CloneURL == "" {
				t.Error("no clone URL")
			}
		})
	}
}

func code(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func TestRefused(t *testing.T) {
	for _, forge := range []string{GitHub, GitLab, Gitea} {
		event := map[string]string{GitHub: "push", GitLab: "Push Hook", Gitea: "push"}[forge]
		t.Run(forge, func(t *testing.T) {
			// The positive control: the same delivery with the right secret.
			if _, _, err := Read(delivery(t, forge, event, "push.json", secret), forge, []byte(secret), 1<<20); err != nil {
				t.Fatalf("the signed delivery was refused: %v", err)
			}
			_, _, err := Read(delivery(t, forge, event, "push.json", "wrong"), forge, []byte(secret), 1<<20)
			if code(err) != http.StatusUnauthorized {
				t.Errorf("wrong secret: %v (code %d), want 401", err, code(err))
			}
			r := delivery(t, forge, event, "push.json", secret)
			for _, h := range []string{"X-Hub-Signature-256", "X-Gitlab-Token", "X-Gitea-Signature"} {
				r.Header.Del(h)
			}
			if _, _, err := Read(r, forge, []byte(secret), 1<<20); code(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "no X-") {
				t.Errorf("no signature: %v, want 401 naming the header", err)
			}
			// A body changed after signing (GitLab's token does not cover it).
			if forge != GitLab {
				r := delivery(t, forge, event, "push.json", secret)
				body, _ := os.ReadFile(filepath.Join("testdata", forge, "push.json"))
				r.Body = httptestBody(bytes.Replace(body, []byte("refs/heads/main"), []byte("refs/heads/evil"), 1))
				if _, _, err := Read(r, forge, []byte(secret), 1<<20); code(err) != http.StatusUnauthorized {
					t.Errorf("tampered body: %v, want 401", err)
				}
			}
			if _, _, err := Read(delivery(t, forge, event, "push.json", secret), forge, []byte(secret), 100); code(err) != http.StatusRequestEntityTooLarge {
				t.Errorf("oversized: %v, want 413", err)
			}
			bad := []byte(`{"ref": "refs/heads/main", "after": `)
			_, _, err = Read(signed(forge, event, bad, secret), forge, []byte(secret), 1<<20)
			if code(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "unexpected end of JSON input") {
				t.Errorf("malformed JSON: %v, want 400 with the reason", err)
			}
			_, _, err = Read(signed(forge, event, []byte(`{"ref": "refs/heads/main"}`), secret), forge, []byte(secret), 1<<20)
			if code(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "after commit") {
				t.Errorf("payload without after: %v, want 400 naming it", err)
			}
			if _, _, err := Read(delivery(t, forge, event, "push.json", ""), forge, nil, 1<<20); code(err) != http.StatusUnauthorized {
				t.Errorf("no secret configured: %v, want 401", err)
			}
		})
	}
	if _, _, err := Read(signed(GitHub, "push", []byte("{}"), secret), "bitbucket", []byte(secret), 1<<20); code(err) != http.StatusNotFound {
		t.Errorf("unknown forge: %v, want 404", err)
	}
}

func httptestBody(b []byte) *readCloser { return &readCloser{bytes.NewReader(b)} }

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// TestForkFailsClosed: a pull request whose head or base repository is not
// named is a fork, whatever the forge.
func TestForkFailsClosed(t *testing.T) {
	for _, p := range []PR{{}, {HeadRepo: "a/b"}, {BaseRepo: "a/b"}, {HeadRepo: "m/b", BaseRepo: "a/b"}} {
		if !p.Fork() {
			t.Errorf("%+v is not a fork", p)
		}
	}
	if p := (PR{HeadRepo: "a/b", BaseRepo: "a/b"}); p.Fork() {
		t.Error("a pull request within a/b is a fork")
	}
	var none *PR
	if none.Fork() {
		t.Error("no pull request is a fork")
	}
}
