package webhook

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// events are the event names each forge's samples are delivered as.
var events = map[string][]string{
	GitHub: {"push", "pull_request", "ping"},
	GitLab: {"Push Hook", "Tag Push Hook", "Merge Request Hook"},
	Gitea:  {"push", "pull_request"},
}

// seedPayloads adds every sample in testdata under each of its forge's
// event names.
func seedPayloads(f *testing.F, add func(forge, event string, body []byte)) {
	f.Helper()
	for forge, names := range events {
		files, err := filepath.Glob(filepath.Join("testdata", forge, "*.json"))
		if err != nil || len(files) == 0 {
			f.Fatalf("no samples for %s: %v", forge, err)
		}
		for _, file := range files {
			body, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			for _, name := range names {
				add(forge, name, body)
			}
		}
	}
}

// FuzzParse feeds the payload parsers of every forge: whatever the body,
// no panic; a refusal is a 4xx *Error; an event that starts something has
// what a run needs.
func FuzzParse(f *testing.F) {
	seedPayloads(f, func(forge, event string, body []byte) { f.Add(forge, event, body) })
	f.Add(GitHub, "pull_request", []byte(`{"action":"opened","number":1,"pull_request":{"head":{"sha":"7f5c2a8d1e6b4f3a9c0d2e1f4a5b6c7d8e9f0a1b"},"base":{"ref":"main"}}}`))
	f.Add(GitLab, "Merge Request Hook", []byte(`{"object_attributes":{"iid":1,"action":"open","target_branch":"main","last_commit":{"id":"7f5c2a8d1e6b4f3a9c0d2e1f4a5b6c7d8e9f0a1b"}}}`))
	f.Add(Gitea, "push", []byte(`null`))
	f.Add("bitbucket", "push", []byte(`{}`))
	f.Fuzz(func(t *testing.T, forge, event string, body []byte) {
		ev, err := Parse(forge, event, body)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code < 400 || e.Code > 499 {
				t.Fatalf("Parse(%q, %q): %v, want a 4xx *Error", forge, event, err)
			}
			return
		}
		switch ev.Kind {
		case "":
			if ev.Ignored == "" {
				t.Fatalf("an event that starts nothing says not why: %+v", ev)
			}
		case Push, Tag:
			if ev.Ref == "" || !ev.Deleted && len(ev.Commit) != 40 {
				t.Fatalf("push without a ref or commit: %+v", ev)
			}
		case PullRequest:
			if ev.PR == nil || ev.PR.Number <= 0 || ev.Ref == "" || len(ev.Commit) != 40 || ev.PR.FetchRef == "" {
				t.Fatalf("pull request without what a run needs: %+v %+v", ev, ev.PR)
			}
			if (ev.PR.HeadRepo == "" || ev.PR.BaseRepo == "") && !ev.PR.Fork() {
				t.Fatalf("a pull request of unnamed repositories is trusted: %+v", ev.PR)
			}
		default:
			t.Fatalf("kind %q", ev.Kind)
		}
	})
}
