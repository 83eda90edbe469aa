package scheduler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/jobrun/jobrun/api"
)

// regScope is what a registration token admits: agents with its labels
// to the jobs (and secrets) of the repositories its globs match.
type regScope struct {
	// name is the stored token's name, "" for --registration-token.
	name string
	// anyLabel: the server's --registration-token admits any label.
	anyLabel bool
	labels   []string
	repos    []string
}

// registrationScope returns what token t admits, or nil when it admits
// nothing (unknown, expired, or not an agent token).
func (s *Server) registrationScope(ctx context.Context, t string) (*regScope, error) {
	if t == "" {
		return nil, nil
	}
	if sameToken(t, s.cfg.RegistrationToken) {
		return &regScope{anyLabel: true, repos: []string{"**"}}, nil
	}
	rec, err := s.st.TokenByHash(ctx, hashToken(t), time.Now())
	if errors.Is(err, errNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if rec.Role != api.RoleAgent {
		return nil, nil
	}
	return &regScope{name: rec.Name, labels: rec.Labels, repos: rec.Repos}, nil
}

// admits checks the labels an agent claims against the scope.
func (sc *regScope) admits(labels []string) error {
	if sc.anyLabel {
		return nil
	}
	for _, l := range labels {
		if !slices.Contains(sc.labels, l) {
			return fmt.Errorf("registration token %s does not allow label %q (it allows %v)", sc.name, l, sc.labels)
		}
	}
	return nil
}

// agentMayRead reports whether the agent token r carries may read the
// artifacts of a job of repo: an agent receives the artifacts its jobs
// need, and only of the repositories its registration token admits.
func (s *Server) agentMayRead(r *http.Request, repo string) (bool, error) {
	t := bearer(r)
	if t == "" {
		return false, nil
	}
	a, err := s.st.AgentByToken(r.Context(), hashToken(t))
	if errors.Is(err, errNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return repoAllowed(a.Repos, repo), nil
}
