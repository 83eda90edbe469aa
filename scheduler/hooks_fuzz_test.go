package scheduler

import (
	"bytes"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/scheduler/webhook"
)

// FuzzWebhookHandler posts deliveries to a real server's webhook route:
// every forge's samples from webhook/testdata, signed and not, mutated by
// the fuzzer. Whatever comes, the answer is no 5xx: bad input is the
// sender's fault, and a commit the repository does not have is not found.
func FuzzWebhookHandler(f *testing.F) {
	events := map[string][]string{
		"github": {"push", "pull_request", "ping"},
		"gitlab": {"Push Hook", "Tag Push Hook", "Merge Request Hook"},
		"gitea":  {"push", "pull_request"},
	}
	for forge, names := range events {
		files, err := filepath.Glob(filepath.Join("webhook", "testdata", forge, "*.json"))
		if err != nil || len(files) == 0 {
			f.Fatalf("no samples for %s: %v", forge, err)
		}
		for _, file := range files {
			body, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			for _, name := range names {
				f.Add(forge, name, body, true)
			}
			f.Add(forge, names[0], body, false)
		}
	}
	f.Add("bitbucket", "push", []byte(`{}`), true)
	f.Add("github", "push", []byte(`{"ref":"refs/heads/main","after":"`+strings.Repeat("0", 39)+`1"}`), true)

	base, _ := triggerServer(f, sqliteStore(f), nil)
	repo := newForgeRepo(f, pushMainOnly)
	for _, forge := range []string{"github", "gitlab", "gitea"} {
		if _, err := admin(base).AddRepo(f.Context(), api.NewRepo{Name: "hello-" + forge, CloneURL: repo.bare, Secret: hookSecret, Forge: forge}); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, forge, event string, body []byte, signed bool) {
		event = strings.Map(func(r rune) rune {
			if r < 0x20 || r >= 0x7f {
				return -1
			}
			return r
		}, event)
		repoName := "hello-" + forge
		if !strings.Contains("github gitlab gitea", forge) || forge == "" {
			repoName = "hello-github"
		}
		req, err := http.NewRequest(http.MethodPost, base+"/hooks/"+url.PathEscape(forge)+"/"+repoName, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		key := "wrong"
		if signed {
			key = hookSecret
		}
		req.Header.Set("X-GitHub-Event", event)
		req.Header.Set("X-Gitlab-Event", event)
		req.Header.Set("X-Gitea-Event", event)
		req.Header.Set("X-Hub-Signature-256", "sha256="+webhook.Sign(body, []byte(key)))
		req.Header.Set("X-Gitea-Signature", webhook.Sign(body, []byte(key)))
		req.Header.Set("X-Gitlab-Token", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %q (signed %v): %s %s", forge, event, signed, resp.Status, b.String())
		}
	})
}
