package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/git"
	"github.com/jobrun/jobrun/internal/redact"
)

// mirrorsDir holds the agent's bare mirror of each repository it ran a job
// of: the next job of the same repository fetches only what is new.
func (p *Pool) mirrorsDir() string { return filepath.Join(p.Runner.WorkDir, "mirrors") }

// checkout fetches the lease's commit and returns the repository and the
// revision the Runner exports from it into a fresh workspace.
//
// For a repository registered with the server (the lease carries
// Checkout) that is the agent's mirror of it, brought up to date with the
// lease's credentials, pull request ref and depth unless it already holds
// the commit; jobs of one repository wait for each other's fetch. A
// clone_url given to the runs API directly is cloned into the job's own
// directory, as before mirrors: nothing is shared between such jobs.
func (p *Pool) checkout(ctx context.Context, lease *api.Lease, dir string, rep *reporter) (repo, rev string, err error) {
	if lease.Checkout == nil {
		rev = lease.Commit
		if rev == "" {
			rev = "HEAD"
			if lease.Branch != "" {
				rev = "refs/remotes/origin/" + lease.Branch
			}
		}
		rep.notice(fmt.Sprintf("clone %s at %s", redact.URL(lease.CloneURL), rev))
		return dir, rev, git.Clone(ctx, lease.CloneURL, dir)
	}
	if lease.Untrusted && lease.Checkout.Mirror != "" {
		return p.fetchFromServer(ctx, lease, dir, rep)
	}
	mirror := git.MirrorPath(p.mirrorsDir(), lease.Repo)
	rev = lease.Commit
	if rev == "" {
		rev = "HEAD"
		if lease.Branch != "" {
			rev = "refs/heads/" + lease.Branch
		}
	}
	if lease.Commit != "" && git.HasCommit(mirror, lease.Commit) {
		rep.notice(fmt.Sprintf("checkout %s at %s (already fetched)", redact.URL(lease.CloneURL), rev))
	} else if err := p.fetch(ctx, lease, mirror, rev, rep); err != nil {
		return "", "", err
	}
	if !lease.Checkout.Submodules {
		return mirror, rev, nil
	}
	return "", "", p.withSubmodules(ctx, lease, mirror, rev, dir, rep)
}

// fetch brings the mirror up to date for the lease.
func (p *Pool) fetch(ctx context.Context, lease *api.Lease, mirror, rev string, rep *reporter) error {
	c := lease.Checkout
	o := git.MirrorOptions{Auth: git.Auth{Token: c.Token, SSHKey: []byte(c.SSHKey)}, Depth: c.Depth}
	// The ref the commit was pushed to, alone: the fetch does not grow
	// with the repository's branches. A commit it does not reach (the
	// branch moved on by more than the depth) comes with every branch.
	ref := c.Ref
	if ref == "" && lease.Branch != "" {
		ref = "refs/heads/" + lease.Branch
		if tag, ok := strings.CutPrefix(lease.Branch, "tags/"); ok {
			ref = "refs/tags/" + tag
		}
	}
	if ref != "" {
		o.Refs, o.OnlyRefs = []string{ref}, true
	}
	rep.notice(fmt.Sprintf("fetch %s %s, checkout at %s", redact.URL(lease.CloneURL), ref, rev))
	err := git.Mirror(ctx, mirror, lease.CloneURL, o)
	if err == nil && lease.Commit != "" && !git.HasCommit(mirror, lease.Commit) {
		o.OnlyRefs = false
		err = git.Mirror(ctx, mirror, lease.CloneURL, o)
	}
	return err
}

// fetchFromServer fetches an untrusted lease's commit from the server's
// mirror, authenticated by the agent's token while it holds the lease:
// such leases carry no forge credentials. Those commits go to mirrors of
// their own (untrusted/ in the mirrors dir), never shallow (the server
// serves whole histories), so a trusted job's mirror holds no ref an
// untrusted fetch made.
func (p *Pool) fetchFromServer(ctx context.Context, lease *api.Lease, dir string, rep *reporter) (string, string, error) {
	mirror := git.MirrorPath(filepath.Join(p.mirrorsDir(), "untrusted"), lease.Repo)
	rev := lease.Commit
	if !git.HasCommit(mirror, rev) {
		url := p.c.Server() + lease.Checkout.Mirror
		rep.notice(fmt.Sprintf("fetch %s from the server's mirror (an untrusted run gets no forge credentials)", rev))
		o := git.MirrorOptions{Auth: git.Auth{Bearer: p.c.Token}, Refs: []string{git.CommitRef}, OnlyRefs: true}
		if err := git.Mirror(ctx, mirror, url, o); err != nil {
			return "", "", err
		}
	} else {
		rep.notice(fmt.Sprintf("checkout %s (already fetched from the server's mirror)", rev))
	}
	if !lease.Checkout.Submodules {
		return mirror, rev, nil
	}
	return "", "", p.withSubmodules(ctx, lease, mirror, rev, dir, rep)
}

// withSubmodules writes the commit and its submodules into the job's own
// directory, which the Runner then sees through a copy-on-write overlay
// (an empty rev): the Runner's own export knows no submodules. An
// untrusted run's submodules are fetched without credentials.
func (p *Pool) withSubmodules(ctx context.Context, lease *api.Lease, mirror, rev, dir string, rep *reporter) error {
	if _, err := git.Export(ctx, mirror, rev, dir); err != nil {
		return err
	}
	o := git.SubmoduleOptions{MirrorDir: p.mirrorsDir(), ParentURL: lease.CloneURL}
	if !lease.Untrusted {
		o.Auth = git.Auth{Token: lease.Checkout.Token, SSHKey: []byte(lease.Checkout.SSHKey)}
	}
	rep.notice("fetch submodules")
	return git.ExportSubmodules(ctx, mirror, rev, dir, o)
}

// source is the directory the Runner makes the workspace from: the mirror
// for a checkout, else the job's own directory.
func (s *jobSource) source() string {
	if s.repo != "" {
		return s.repo
	}
	return s.dir
}
