// Package webhook reads the push, tag and pull-request webhooks of GitHub,
// GitLab and Gitea (Forgejo speaks Gitea's): it checks a delivery's
// signature in constant time and turns its forge-specific payload into one
// Event. It knows nothing of repositories or runs; the scheduler decides
// what an Event starts.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// The forges whose webhooks Read understands.
const (
	GitHub = "github"
	GitLab = "gitlab"
	Gitea  = "gitea"
)

// The kinds of Event that may start a run.
const (
	Push        = "push"
	Tag         = "tag"
	PullRequest = "pull_request"
)

// Event is one delivery, whatever the forge.
type Event struct {
	Forge string
	// Delivery is the forge's id of this delivery (it stays the same when
	// the forge redelivers it).
	Delivery string
	// Name is the event as the forge names it ("push", "Merge Request
	// Hook"); Kind is Push, Tag or PullRequest, or empty for an event
	// that starts nothing (Ignored says why).
	Name    string
	Kind    string
	Ignored string
	// Repo is the repository's full name on the forge ("owner/name"),
	// CloneURL its HTTPS clone URL and DefaultBranch its default branch.
	Repo          string
	CloneURL      string
	DefaultBranch string
	// Ref is the branch or tag name (without refs/heads/ or refs/tags/);
	// for a pull request, its target branch.
	Ref string
	// Commit is the commit to run: the pushed head, or the pull request's
	// head.
	Commit string
	// Deleted is set for a push that deletes a branch or tag.
	Deleted bool
	// PR is set for pull requests.
	PR *PR
}

// PR is what a pull (merge) request event says of the request.
type PR struct {
	Number int
	Action string
	// HeadRef is the source branch; HeadRepo the repository it is in,
	// BaseRepo the target's. They differ for a pull request from a fork.
	HeadRef  string
	HeadRepo string
	BaseRepo string
	// FetchRef is where the target repository keeps the head commit
	// ("refs/pull/7/head", "refs/merge-requests/7/head"), since a fork's
	// branch is not in it.
	FetchRef string
}

// Fork reports whether a pull request comes from another repository than
// its target: its code is untrusted. It fails closed: a pull request whose
// head or base repository is not named counts as a fork.
func (p *PR) Fork() bool {
	return p != nil && (p.HeadRepo == "" || p.BaseRepo == "" || p.HeadRepo != p.BaseRepo)
}

// Error is a delivery refused: Code is the HTTP status to answer with.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func refuse(code int, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// ErrSignature is wrapped by the errors of a missing or wrong signature.
var ErrSignature = errors.New("signature check failed")

// Read reads one delivery of forge from r: at most max bytes of body
// (larger → 413), the signature checked against secret (wrong or missing
// → 401, before the body is parsed), then the payload (malformed → 400).
// It returns the event and the body as received. Errors are *Error.
func Read(r *http.Request, forge string, secret []byte, max int64) (*Event, []byte, error) {
	if len(secret) == 0 {
		return nil, nil, refuse(http.StatusUnauthorized, "the repository has no webhook secret: set one with jobrun repo add --secret")
	}
	var name, delivery string
	switch forge {
	case GitHub:
		name, delivery = r.Header.Get("X-GitHub-Event"), r.Header.Get("X-GitHub-Delivery")
	case GitLab:
		name, delivery = r.Header.Get("X-Gitlab-Event"), r.Header.Get("X-Gitlab-Event-UUID")
		if delivery == "" {
			delivery = r.Header.Get("X-Gitlab-Webhook-UUID")
		}
	case Gitea:
		name, delivery = r.Header.Get("X-Gitea-Event"), r.Header.Get("X-Gitea-Delivery")
		if name == "" { // Forgejo
			name, delivery = r.Header.Get("X-Forgejo-Event"), r.Header.Get("X-Forgejo-Delivery")
		}
	default:
		return nil, nil, refuse(http.StatusNotFound, "unknown forge %q: want github, gitlab or gitea", forge)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, nil, refuse(http.StatusBadRequest, "read body: %v", err)
	}
	if int64(len(body)) > max {
		return nil, nil, refuse(http.StatusRequestEntityTooLarge, "body larger than %d bytes", max)
	}
	if err := Verify(forge, r.Header, body, secret); err != nil {
		return nil, nil, &Error{Code: http.StatusUnauthorized, Msg: err.Error()}
	}
	if name == "" {
		return nil, nil, refuse(http.StatusBadRequest, "no event header: is this a %s webhook?", forge)
	}
	ev, err := Parse(forge, name, body)
	if err != nil {
		return nil, nil, err
	}
	ev.Delivery = delivery
	return ev, body, nil
}

// Verify checks a delivery's signature: GitHub's X-Hub-Signature-256
// ("sha256=" and the hex HMAC-SHA256 of the body), Gitea's
// X-Gitea-Signature (the bare hex HMAC-SHA256), GitLab's X-Gitlab-Token
// (the secret itself). Every comparison takes constant time.
func Verify(forge string, h http.Header, body, secret []byte) error {
	switch forge {
	case GitHub:
		sig := h.Get("X-Hub-Signature-256")
		if sig == "" {
			return fmt.Errorf("%w: no X-Hub-Signature-256 header (set the webhook's secret on GitHub)", ErrSignature)
		}
		hexsig, ok := strings.CutPrefix(sig, "sha256=")
		if !ok || !macEqual(hexsig, body, secret) {
			return fmt.Errorf("%w: X-Hub-Signature-256 does not match the body and the repository's secret", ErrSignature)
		}
	case Gitea:
		sig := h.Get("X-Gitea-Signature")
		if sig == "" {
			sig = h.Get("X-Forgejo-Signature")
		}
		if sig == "" {
			return fmt.Errorf("%w: no X-Gitea-Signature header (set the webhook's secret on Gitea)", ErrSignature)
		}
		if !macEqual(sig, body, secret) {
			return fmt.Errorf("%w: X-Gitea-Signature does not match the body and the repository's secret", ErrSignature)
		}
	case GitLab:
		tok := h.Get("X-Gitlab-Token")
		if tok == "" {
			return fmt.Errorf("%w: no X-Gitlab-Token header (set the webhook's secret token on GitLab)", ErrSignature)
		}
		// Hashing first makes the comparison's time independent of the
		// lengths too.
		a, b := sha256.Sum256([]byte(tok)), sha256.Sum256(secret)
		if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
			return fmt.Errorf("%w: X-Gitlab-Token is not the repository's secret", ErrSignature)
		}
	default:
		return fmt.Errorf("unknown forge %q", forge)
	}
	return nil
}

// Sign returns the hex HMAC-SHA256 of body under secret, as GitHub (after
// "sha256=") and Gitea send it.
func Sign(body, secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func macEqual(hexsig string, body, secret []byte) bool {
	got, err := hex.DecodeString(hexsig)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}
