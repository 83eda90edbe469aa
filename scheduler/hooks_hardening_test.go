package scheduler

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/api"
)

// syncBuffer is a log output tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logTo makes a server log into buf at info level, as a server runs.
func logTo(buf *syncBuffer) func(*Config) {
	return func(c *Config) {
		c.Log = hclog.New(&hclog.LoggerOptions{Output: buf, Level: hclog.Info})
	}
}

// deliverySeries counts the series of jobrun_webhook_deliveries_total and
// returns the value of the one with the given labels.
func deliverySeries(t *testing.T, s *Server, forge, result string) (series int, value float64) {
	t.Helper()
	fams, err := s.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "jobrun_webhook_deliveries_total" {
			continue
		}
		for _, m := range f.Metric {
			series++
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["forge"] == forge && labels["result"] == result {
				value = m.GetCounter().GetValue()
			}
		}
	}
	return series, value
}

// TestWebhookFloodAddsNoSeriesOrLogLines posts many deliveries to made-up
// forges and many with wrong signatures: the metric keeps a fixed label
// set and the log does not grow with their number. The control: a real
// forge's refusal is counted under its name and warned of once.
func TestWebhookFloodAddsNoSeriesOrLogLines(t *testing.T) {
	var logs syncBuffer
	base, srv := triggerServer(t, sqliteStore(t), logTo(&logs))
	repo := newForgeRepo(t, pushMainOnly)
	addRepo(t, base, api.NewRepo{Name: "hello", CloneURL: repo.bare, Secret: hookSecret, Forge: "github"})
	body := payload(t, "github", "push.json", repo.push("main", map[string]string{"a": "1"}), "")

	if code, msg := deliver(t, base, "github", "hello", "push", body, "wrong"); code != 401 {
		t.Fatalf("wrong secret: %d %s", code, msg)
	}
	if _, n := deliverySeries(t, srv, "github", "bad_signature"); n != 1 {
		t.Fatalf("github bad_signature = %v, want 1", n)
	}
	if !strings.Contains(logs.String(), "webhook refused") {
		t.Fatalf("the first refusal was not warned of:\n%s", logs.String())
	}
	before, _ := deliverySeries(t, srv, "", "")
	lines := strings.Count(logs.String(), "\n")

	const flood = 300
	for i := range flood {
		forge := fmt.Sprintf("forge-%d", i)
		if code, msg := deliver(t, base, forge, "hello", "push", body, hookSecret); code != 404 {
			t.Fatalf("made-up forge %s: %d %s, want 404", forge, code, msg)
		}
		if code, msg := deliver(t, base, "github", "hello", "push", body, fmt.Sprintf("wrong-%d", i)); code != 401 {
			t.Fatalf("wrong secret: %d %s", code, msg)
		}
	}
	after, other := deliverySeries(t, srv, otherForge, "unknown_forge")
	if after > before+1 || other != flood {
		t.Errorf("%d made-up forges: %d series after, %d before; other=%v", flood, after, before, other)
	}
	if _, n := deliverySeries(t, srv, "github", "bad_signature"); n != flood+1 {
		t.Errorf("github bad_signature = %v, want %d", n, flood+1)
	}
	if added := strings.Count(logs.String(), "\n") - lines; added > 2 {
		t.Errorf("%d refused deliveries wrote %d log lines:\n%s", 2*flood, added, logs.String())
	}
	if strings.Contains(logs.String(), "forge-1") {
		t.Error("a made-up forge's name reached the log above debug")
	}
}

// TestWebhookUnknownRepoAnswersAsBadSignature: a delivery to a repository
// that is not registered gets the very answer a registered one's wrong
// signature gets, so webhooks do not tell which repositories exist.
func TestWebhookUnknownRepoAnswersAsBadSignature(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) { unknownRepoAnswers(t, open()) })
}

func unknownRepoAnswers(t *testing.T, st Store) {
	base, _ := triggerServer(t, st, nil)
	repo := newForgeRepo(t, pushMainOnly)
	head := repo.push("main", map[string]string{"a": "1"})
	for _, c := range []struct{ forge, event string }{{"github", "push"}, {"gitlab", "Push Hook"}, {"gitea", "push"}} {
		name := "known-" + c.forge
		addRepo(t, base, api.NewRepo{Name: name, CloneURL: repo.bare, Secret: hookSecret, Forge: c.forge})
		body := payload(t, c.forge, "push.json", head, "")
		knownCode, knownMsg := deliver(t, base, c.forge, name, c.event, body, "wrong")
		for _, key := range []string{"wrong", hookSecret} {
			code, msg := deliver(t, base, c.forge, "not-registered", c.event, body, key)
			if code != knownCode || msg != knownMsg {
				t.Errorf("%s: unknown repository signed with %q: %d %s; a known one's wrong signature: %d %s",
					c.forge, key, code, msg, knownCode, knownMsg)
			}
		}
		if knownCode != 401 {
			t.Errorf("%s: wrong signature: %d %s, want 401", c.forge, knownCode, knownMsg)
		}
		// A registered repository without a webhook secret takes none,
		// and is not told from an unknown one either.
		addRepo(t, base, api.NewRepo{Name: "nosecret-" + c.forge, CloneURL: repo.bare, Forge: c.forge})
		if code, msg := deliver(t, base, c.forge, "nosecret-"+c.forge, c.event, body, "wrong"); code != knownCode || msg != knownMsg {
			t.Errorf("%s: repository without a secret: %d %s; a wrong signature: %d %s", c.forge, code, msg, knownCode, knownMsg)
		}
		// The control: the known repository with the right secret.
		if code, msg := deliver(t, base, c.forge, name, c.event, body, hookSecret); code != 201 {
			t.Errorf("%s: signed delivery: %d %s", c.forge, code, msg)
		}
	}
}

// TestGitLabForkWithoutNamesIsUntrusted delivers a GitLab merge request
// from another project (its id differs) whose payload names neither
// project: the run is untrusted, so its lease carries no secrets. The
// control: the same payload from the target project itself is trusted.
func TestGitLabForkWithoutNamesIsUntrusted(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) { gitlabForkWithoutNames(t, open()) })
}

func gitlabForkWithoutNames(t *testing.T, st Store) {
	base, _ := triggerServer(t, st, nil)
	repo := newForgeRepo(t, pushMainOnly)
	addRepo(t, base, api.NewRepo{Name: "group/hello", CloneURL: repo.bare, Secret: hookSecret, Forge: "gitlab"})
	ctx := context.Background()
	if err := admin(base).SetSecret(ctx, "group/hello", "TOKEN", api.SetSecret{Value: "mr-secret"}); err != nil {
		t.Fatal(err)
	}
	mr := repo.push("mr", map[string]string{"x": "y"})
	repo.w.Git("push", "-q", "origin", mr+":refs/merge-requests/3/head")
	a, reg := register(t, base, "a", 2)
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
	if l := lease("merge_request-same-nonames.json"); l.Untrusted || l.Secrets["TOKEN"] != "mr-secret" {
		t.Fatalf("merge request within the project: untrusted %v, secrets %v", l.Untrusted, l.Secrets)
	}
	if l := lease("merge_request-fork-nonames.json"); !l.Untrusted || len(l.Secrets) != 0 {
		t.Fatalf("merge request from another project without names: untrusted %v, secrets %v", l.Untrusted, l.Secrets)
	}
}
