package webhook

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// zero is the commit a push names as `after` when it deletes a ref.
const zero = "0000000000000000000000000000000000000000"

// Parse turns a payload of forge's event name into an Event. An event that
// starts nothing (a ping, an issue comment, a closed pull request) comes
// back with an empty Kind and the reason in Ignored; malformed JSON or a
// payload that lacks what its event needs is a 400 *Error.
func Parse(forge, name string, body []byte) (*Event, error) {
	ev := &Event{Forge: forge, Name: name}
	var err error
	switch forge {
	case GitHub:
		err = parseGitHub(ev, body)
	case GitLab:
		err = parseGitLab(ev, body)
	case Gitea:
		err = parseGitea(ev, body)
	default:
		return nil, refuse(http.StatusNotFound, "unknown forge %q", forge)
	}
	if err != nil {
		return nil, err
	}
	return ev, nil
}

func decode(forge, name string, body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return refuse(http.StatusBadRequest, "%s %q payload: %v", forge, name, err)
	}
	return nil
}

func missing(ev *Event, what string) error {
	return refuse(http.StatusBadRequest, "%s %q payload has no %s", ev.Forge, ev.Name, what)
}

// setRef fills Kind, Ref and Deleted from a push's ref and after.
func (ev *Event) setRef(ref, after string, deleted bool) error {
	switch {
	case strings.HasPrefix(ref, "refs/heads/"):
		ev.Kind, ev.Ref = Push, strings.TrimPrefix(ref, "refs/heads/")
	case strings.HasPrefix(ref, "refs/tags/"):
		ev.Kind, ev.Ref = Tag, strings.TrimPrefix(ref, "refs/tags/")
	case ref == "":
		return missing(ev, "ref")
	default:
		ev.Ignored = fmt.Sprintf("push to %s, neither a branch nor a tag", ref)
		return nil
	}
	ev.Commit, ev.Deleted = after, deleted || after == zero
	if ev.Deleted {
		ev.Commit = ""
	} else if len(after) != 40 {
		return missing(ev, "after commit (40 hex digits)")
	}
	return nil
}

// forgeRepo is the repository object GitHub and Gitea both send.
type forgeRepo struct {
	FullName      string `json:"full_name"`
	CloneURL      string `json:"clone_url"`
	DefaultBranch string `json:"default_branch"`
}

type ghPush struct {
	Ref        string    `json:"ref"`
	Before     string    `json:"before"`
	After      string    `json:"after"`
	Deleted    bool      `json:"deleted"`
	Repository forgeRepo `json:"repository"`
}

type ghPullRequest struct {
	Action      string `json:"action"`
	Number      int    `json:"number"`
	PullRequest struct {
		Number int `json:"number"`
		Head   struct {
			Ref  string     `json:"ref"`
			SHA  string     `json:"sha"`
			Repo *forgeRepo `json:"repo"`
		} `json:"head"`
		Base struct {
			Ref  string    `json:"ref"`
			SHA  string    `json:"sha"`
			Repo forgeRepo `json:"repo"`
		} `json:"base"`
	} `json:"pull_request"`
	Repository forgeRepo `json:"repository"`
}

func parseGitHub(ev *Event, body []byte) error {
	switch ev.Name {
	case "push":
		var p ghPush
		if err := decode(ev.Forge, ev.Name, body, &p); err != nil {
			return err
		}
		ev.setRepo(p.Repository)
		return ev.setRef(p.Ref, p.After, p.Deleted)
	case "pull_request":
		var p ghPullRequest
		if err := decode(ev.Forge, ev.Name, body, &p); err != nil {
			return err
		}
		ev.setRepo(p.Repository)
		pr := p.PullRequest
		head := pr.Head.Repo
		if head == nil {
			// The fork was deleted: its code is no one's we know.
			head = &forgeRepo{FullName: "(deleted fork)"}
		}
		return ev.setPR(p.Action, p.Number, pr.Base.Ref, pr.Head.Ref, pr.Head.SHA, head.FullName, pr.Base.Repo.FullName,
			fmt.Sprintf("refs/pull/%d/head", p.Number), []string{"opened", "synchronize", "reopened"})
	}
	ev.Ignored = fmt.Sprintf("GitHub event %q starts nothing", ev.Name)
	if ev.Name == "ping" {
		ev.Ignored = "ping received"
	}
	return nil
}

func parseGitea(ev *Event, body []byte) error {
	switch ev.Name {
	case "push":
		var p ghPush // Gitea's push payload follows GitHub's
		if err := decode(ev.Forge, ev.Name, body, &p); err != nil {
			return err
		}
		ev.setRepo(p.Repository)
		return ev.setRef(p.Ref, p.After, false)
	case "pull_request":
		var p ghPullRequest // and its pull_request payload too
		if err := decode(ev.Forge, ev.Name, body, &p); err != nil {
			return err
		}
		ev.setRepo(p.Repository)
		pr := p.PullRequest
		head := pr.Head.Repo
		if head == nil {
			head = &forgeRepo{FullName: "(deleted fork)"}
		}
		return ev.setPR(p.Action, p.Number, pr.Base.Ref, pr.Head.Ref, pr.Head.SHA, head.FullName, pr.Base.Repo.FullName,
			fmt.Sprintf("refs/pull/%d/head", p.Number), []string{"opened", "synchronized", "reopened"})
	}
	ev.Ignored = fmt.Sprintf("Gitea event %q starts nothing", ev.Name)
	return nil
}

type glProject struct {
	ID                int    `json:"id"`
	PathWithNamespace string `json:"path_with_namespace"`
	GitHTTPURL        string `json:"git_http_url"`
	DefaultBranch     string `json:"default_branch"`
}

type glPush struct {
	ObjectKind  string    `json:"object_kind"`
	Ref         string    `json:"ref"`
	Before      string    `json:"before"`
	After       string    `json:"after"`
	CheckoutSHA *string   `json:"checkout_sha"`
	Project     glProject `json:"project"`
}

type glMergeRequest struct {
	ObjectKind       string    `json:"object_kind"`
	Project          glProject `json:"project"`
	ObjectAttributes struct {
		IID             int       `json:"iid"`
		Action          string    `json:"action"`
		OldRev          string    `json:"oldrev"`
		SourceBranch    string    `json:"source_branch"`
		TargetBranch    string    `json:"target_branch"`
		SourceProjectID int       `json:"source_project_id"`
		TargetProjectID int       `json:"target_project_id"`
		Source          glProject `json:"source"`
		Target          glProject `json:"target"`
		LastCommit      struct {
			ID string `json:"id"`
		} `json:"last_commit"`
	} `json:"object_attributes"`
}

func parseGitLab(ev *Event, body []byte) error {
	switch ev.Name {
	case "Push Hook", "Tag Push Hook":
		var p glPush
		if err := decode(ev.Forge, ev.Name, body, &p); err != nil {
			return err
		}
		ev.Repo, ev.CloneURL, ev.DefaultBranch = p.Project.PathWithNamespace, p.Project.GitHTTPURL, p.Project.DefaultBranch
		return ev.setRef(p.Ref, p.After, p.CheckoutSHA == nil && p.After == zero)
	case "Merge Request Hook":
		var p glMergeRequest
		if err := decode(ev.Forge, ev.Name, body, &p); err != nil {
			return err
		}
		ev.Repo, ev.CloneURL, ev.DefaultBranch = p.Project.PathWithNamespace, p.Project.GitHTTPURL, p.Project.DefaultBranch
		a := p.ObjectAttributes
		action := a.Action
		if action == "update" && a.OldRev == "" {
			// An update without oldrev changed the title, labels or
			// the like, not the code.
			action = "update (no new commits)"
		}
		head, base := glRepos(p.Project, a.SourceProjectID, a.TargetProjectID, a.Source, a.Target)
		return ev.setPR(action, a.IID, a.TargetBranch, a.SourceBranch, a.LastCommit.ID, head, base,
			fmt.Sprintf("refs/merge-requests/%d/head", a.IID), []string{"open", "update", "reopen"})
	}
	ev.Ignored = fmt.Sprintf("GitLab event %q starts nothing", ev.Name)
	return nil
}

// glRepos names a merge request's source and target projects so that
// PR.Fork fails closed: the project ids decide when GitLab sends both, and
// differing ids are a fork whatever the names say (or lack). Without ids
// the names decide, and a missing name makes PR.Fork true.
func glRepos(project glProject, sourceID, targetID int, source, target glProject) (head, base string) {
	head, base = source.PathWithNamespace, target.PathWithNamespace
	if base == "" && targetID != 0 && targetID == project.ID {
		base = project.PathWithNamespace // the hook's project is the target
	}
	switch {
	case sourceID == 0 || targetID == 0:
		return head, base
	case sourceID == targetID:
		if base == "" {
			base = fmt.Sprintf("project %d", targetID)
		}
		return base, base
	}
	if head == "" {
		head = fmt.Sprintf("project %d", sourceID)
	}
	if base == "" {
		base = fmt.Sprintf("project %d", targetID)
	}
	if head == base {
		head = fmt.Sprintf("%s (project %d)", head, sourceID)
	}
	return head, base
}

func (ev *Event) setRepo(r forgeRepo) {
	ev.Repo, ev.CloneURL, ev.DefaultBranch = r.FullName, r.CloneURL, r.DefaultBranch
}

// setPR fills a pull request event; actions are those that bring new code
// to run, others are ignored.
func (ev *Event) setPR(action string, number int, base, headRef, sha, headRepo, baseRepo, fetchRef string, actions []string) error {
	ok := false
	for _, a := range actions {
		ok = ok || a == action
	}
	if !ok {
		ev.Ignored = fmt.Sprintf("pull request #%d %s: no new code to run", number, action)
		return nil
	}
	switch {
	case number <= 0:
		return missing(ev, "pull request number")
	case base == "":
		return missing(ev, "target branch")
	case len(sha) != 40:
		return missing(ev, "head commit (40 hex digits)")
	}
	ev.Kind, ev.Ref, ev.Commit = PullRequest, base, sha
	ev.PR = &PR{Number: number, Action: action, HeadRef: headRef, HeadRepo: headRepo, BaseRepo: baseRepo, FetchRef: fetchRef}
	return nil
}
