package api

import (
	"context"
	"net/http"
	"net/url"
)

// NewRepo registers a repository with the server (or replaces its
// settings): where to clone it from, the webhook secret its forge signs
// deliveries with, and the credentials for cloning and commit statuses.
type NewRepo struct {
	// Name is the repository's name in jobrun (runs, caches, secrets and
	// the webhook URL /hooks/FORGE/NAME use it).
	Name     string `json:"name"`
	CloneURL string `json:"clone_url"`
	// Forge is github, gitlab or gitea: the API commit statuses are sent
	// to. APIURL is the forge's API base (default https://api.github.com,
	// https://gitlab.com/api/v4; required for Gitea), ForgeRepo the
	// repository's path there ("owner/name"; for GitLab also a numeric
	// project id).
	Forge     string `json:"forge,omitempty"`
	APIURL    string `json:"api_url,omitempty"`
	ForgeRepo string `json:"forge_repo,omitempty"`
	// DefaultBranch holds the cron schedules (default "main").
	DefaultBranch string `json:"default_branch,omitempty"`
	// Secret checks webhook deliveries. Token is an HTTPS access token
	// (cloning and commit statuses); SSHKey a PEM private key for ssh://
	// clone URLs. Neither is ever sent back.
	Secret string `json:"secret,omitempty"`
	Token  string `json:"token,omitempty"`
	SSHKey string `json:"ssh_key,omitempty"`
	// Depth, if above zero, makes agents fetch that many commits per ref
	// (a shallow mirror).
	Depth int `json:"depth,omitempty"`
	// Submodules makes agents fill the repository's submodules (http(s)
	// and ssh URLs only).
	Submodules bool `json:"submodules,omitempty"`
	// Mirror, set for untrusted runs instead of Token and SSHKey, is the
	// server's path (under its URL) that serves Commit alone from the
	// server's own mirror over git's smart HTTP, to the agent holding the
	// lease (its bearer token): forge credentials cannot be scoped to
	// one commit, so an untrusted job's agent never receives them.
	Mirror string `json:"mirror,omitempty"`
}

// Repo is a registered repository as clients see it: never its secrets.
type Repo struct {
	Name          string `json:"name"`
	CloneURL      string `json:"clone_url"`
	Forge         string `json:"forge,omitempty"`
	APIURL        string `json:"api_url,omitempty"`
	ForgeRepo     string `json:"forge_repo,omitempty"`
	DefaultBranch string `json:"default_branch"`
	Depth         int    `json:"depth,omitempty"`
	Submodules    bool   `json:"submodules,omitempty"`
	HasSecret     bool   `json:"has_secret"`
	HasToken      bool   `json:"has_token"`
	HasSSHKey     bool   `json:"has_ssh_key"`
	// Schedules are the cron triggers of the default branch's job file.
	Schedules []string `json:"schedules,omitempty"`
}

// TriggerRun asks for a manual run of a branch's head.
type TriggerRun struct {
	Branch string            `json:"branch"`
	Jobs   []string          `json:"jobs,omitempty"`
	Env    map[string]string `json:"env,omitempty"`
}

// Checkout tells an agent how to fetch a lease's commit from CloneURL:
// credentials, the ref the commit is under when not a branch or tag (a
// pull request's), and how deep to fetch.
type Checkout struct {
	Token  string `json:"token,omitempty"`
	SSHKey string `json:"ssh_key,omitempty"`
	Ref    string `json:"ref,omitempty"`
	Depth  int    `json:"depth,omitempty"`
	// Submodules are filled too; the credentials go only to the
	// repository's own host, and to none for untrusted runs.
	Submodules bool `json:"submodules,omitempty"`
	// Mirror, set for untrusted runs instead of Token and SSHKey, is the
	// server's path (under its URL) that serves Commit alone from the
	// server's own mirror over git's smart HTTP, to the agent holding the
	// lease (its bearer token): forge credentials cannot be scoped to
	// one commit, so an untrusted job's agent never receives them.
	Mirror string `json:"mirror,omitempty"`
}

// AddRepo registers or updates a repository (admin token).
func (c *Client) AddRepo(ctx context.Context, r NewRepo) (*Repo, error) {
	var out Repo
	_, err := c.do(ctx, http.MethodPost, "/api/v1/repos", r, &out)
	return &out, err
}

// Repos lists the registered repositories (admin token).
func (c *Client) Repos(ctx context.Context) ([]Repo, error) {
	var out []Repo
	_, err := c.do(ctx, http.MethodGet, "/api/v1/repos", nil, &out)
	return out, err
}

// Trigger starts a run of a branch's head as the server's mirror of repo
// has it (admin token).
func (c *Client) Trigger(ctx context.Context, repo string, t TriggerRun) (*Run, error) {
	var out Run
	_, err := c.do(ctx, http.MethodPost, "/api/v1/repos/"+url.PathEscape(repo)+"/trigger", t, &out)
	return &out, err
}
