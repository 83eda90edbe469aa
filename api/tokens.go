package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Role is what a user token may do. Each role includes the ones before
// it: read < operate < admin.
type Role string

// The roles of user tokens, and the role of agent registration tokens
// (which admit agents to the pool and grant no user role).
const (
	// RoleNone is an anonymous caller on a server without --public-read.
	RoleNone Role = ""
	// RoleRead reads runs, jobs, logs, artifacts, agents and metrics.
	RoleRead Role = "read"
	// RoleOperate also cancels and retries jobs and triggers runs.
	RoleOperate Role = "operate"
	// RoleAdmin also creates runs through the API and manages
	// repositories, secrets and tokens.
	RoleAdmin Role = "admin"
	// RoleAgent is a registration token: it admits agents with the labels
	// it lists to the jobs of the repositories it lists.
	RoleAgent Role = "agent"
)

// rank orders the user roles; an agent token ranks below read.
func (r Role) rank() int {
	switch r {
	case RoleRead:
		return 1
	case RoleOperate:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Allows reports whether a holder of role r may do what need needs.
func (r Role) Allows(need Role) bool { return need.rank() > 0 && r.rank() >= need.rank() }

// ParseRole checks a role's name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleRead, RoleOperate, RoleAdmin, RoleAgent:
		return r, nil
	}
	return "", fmt.Errorf("role %q: want read, operate, admin or agent", s)
}

// NewToken asks for an API or registration token.
type NewToken struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	// Expires, when set, is how long the token lives.
	Expires Duration `json:"expires,omitempty"`
	// Labels (agent tokens) are the labels an agent may register with;
	// Repos (agent tokens) are globs of the repositories whose jobs and
	// secrets its agents may receive ("org/*", "**" for all).
	Labels []string `json:"labels,omitempty"`
	Repos  []string `json:"repos,omitempty"`
}

// Token describes a stored token; Secret is set only in the reply that
// made it (the server keeps only its hash).
type Token struct {
	Name    string     `json:"name"`
	Role    Role       `json:"role"`
	Labels  []string   `json:"labels,omitempty"`
	Repos   []string   `json:"repos,omitempty"`
	Created time.Time  `json:"created"`
	Expires *time.Time `json:"expires,omitempty"`
	Secret  string     `json:"secret,omitempty"`
}

// AddToken makes a token (admin).
func (c *Client) AddToken(ctx context.Context, t NewToken) (*Token, error) {
	var out Token
	_, err := c.do(ctx, http.MethodPost, "/api/v1/tokens", t, &out)
	return &out, err
}

// Tokens lists the stored tokens (admin).
func (c *Client) Tokens(ctx context.Context) ([]Token, error) {
	var out []Token
	_, err := c.do(ctx, http.MethodGet, "/api/v1/tokens", nil, &out)
	return out, err
}

// RemoveToken deletes a token, its web sessions and the agents it
// admitted (admin).
func (c *Client) RemoveToken(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(name), nil, nil)
	return err
}
