package git

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"

	"github.com/jobrun/jobrun/internal/lockfile"
	"github.com/jobrun/jobrun/internal/redact"
)

// Auth is how a mirror authenticates to its remote: an HTTPS token, or an
// SSH private key. The zero Auth is anonymous.
type Auth struct {
	// Token is sent as the password of HTTP basic auth, which GitHub,
	// GitLab and Gitea all accept for access tokens; Username defaults to
	// "oauth2" (any non-empty name works for tokens).
	Username string
	Token    string
	// SSHKey is a PEM private key for ssh:// and scp-like URLs; the host
	// key is checked against the user's known_hosts (or SSH_KNOWN_HOSTS).
	SSHKey []byte
	// Bearer is sent as an HTTP bearer token: an agent's token, to fetch
	// a leased commit from the server's mirror.
	Bearer string
}

func (a Auth) method(url string) (transport.AuthMethod, error) {
	switch {
	case len(a.SSHKey) > 0:
		user := "git"
		if ep, err := transport.NewEndpoint(url); err == nil && ep.User != "" {
			user = ep.User
		}
		k, err := gitssh.NewPublicKeys(user, a.SSHKey, "")
		if err != nil {
			return nil, fmt.Errorf("ssh key: %w", err)
		}
		return k, nil
	case a.Bearer != "":
		return &githttp.TokenAuth{Token: a.Bearer}, nil
	case a.Token != "":
		user := a.Username
		if user == "" {
			user = "oauth2"
		}
		return &githttp.BasicAuth{Username: user, Password: a.Token}, nil
	}
	return nil, nil
}

// MirrorOptions tune Mirror.
type MirrorOptions struct {
	Auth Auth
	// Refs are fetched besides every branch and tag: the ref of a pull
	// request ("refs/pull/7/head"), which the forge keeps outside
	// refs/heads.
	Refs []string
	// Depth, if above zero, fetches only that many commits of each ref.
	Depth int
	// OnlyRefs fetches Refs alone, not every branch and tag: a webhook
	// names the one ref that moved, and asking for it alone keeps a
	// fetch from growing with the repository's number of branches.
	OnlyRefs bool
}

// Mirror brings the bare mirror at dir up to date with the repository at
// url: the first call makes it, later ones fetch only what is new. Branches
// and tags are mirrored under their own names (deleted ones are pruned).
// Callers on one host are serialised by a lock file beside dir. Errors
// never show url's user name or password (redact.Error).
func Mirror(ctx context.Context, dir, url string, o MirrorOptions) error {
	return redact.Error(mirror(ctx, dir, url, o))
}

func mirror(ctx context.Context, dir, url string, o MirrorOptions) error {
	auth, err := o.Auth.method(url)
	if err != nil {
		return fmt.Errorf("mirror %s: %w", url, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("mirror %s: %w", url, err)
	}
	lock, err := lockfile.Acquire(ctx, dir+".lock")
	if err != nil {
		return fmt.Errorf("mirror %s: lock %s: %w", url, dir, err)
	}
	defer lock.Release()
	repo, err := openMirror(dir, url)
	if err != nil {
		return fmt.Errorf("mirror %s in %s: %w", url, dir, err)
	}
	specs := []config.RefSpec{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}
	if o.OnlyRefs {
		if len(o.Refs) == 0 {
			return fmt.Errorf("mirror %s: OnlyRefs without refs", url)
		}
		specs = nil
	}
	for _, r := range o.Refs {
		if !strings.HasPrefix(r, "refs/") || strings.ContainsAny(r, "*:^~ ") {
			return fmt.Errorf("mirror %s: ref %q: want a full ref name such as refs/pull/1/head", url, r)
		}
		specs = append(specs, config.RefSpec("+"+r+":"+r))
	}
	err = repo.FetchContext(ctx, &gogit.FetchOptions{
		RemoteName: "origin", RefSpecs: specs, Auth: auth, Depth: o.Depth,
		Tags: gogit.NoTags, Force: true, Prune: !o.OnlyRefs,
	})
	var noRef gogit.NoMatchingRefSpecError
	if errors.As(err, &noRef) {
		return fmt.Errorf("fetch %s: %w: %v", url, ErrNoRef, err)
	}
	if err != nil && !errors.Is(err, gogit.NoErrAlreadyUpToDate) {
		return fmt.Errorf("fetch %s into %s: %w", url, dir, err)
	}
	if err := consolidate(repo, dir, o.Depth > 0); err != nil {
		return fmt.Errorf("repack %s: %w", dir, err)
	}
	return nil
}

// maxPacks is how many packs a mirror collects before they are repacked
// into one. Every fetch adds a pack, and go-git looks an object up in each
// pack's index in turn: with a hundred packs, reading one file of a commit
// took 30-80 ms instead of 1.5, and a fetch 100-400 ms instead of 13.
const maxPacks = 16

// consolidate repacks a mirror's objects into one pack once it has more
// than maxPacks, as git gc --auto does. The objects no ref reaches (a
// force-pushed branch's old commits) are dropped, as gc drops them; packs
// written from now on (by no one: the caller holds the mirror's lock) are
// kept. Shallow mirrors are left alone: the walk would stop at their
// missing parents.
func consolidate(repo *gogit.Repository, dir string, shallow bool) error {
	packs, err := filepath.Glob(filepath.Join(dir, "objects", "pack", "*.pack"))
	if err != nil || len(packs) <= maxPacks || shallow {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "shallow")); err == nil {
		return nil
	}
	return repo.RepackObjects(&gogit.RepackConfig{OnlyDeletePacksOlderThan: time.Now()})
}

// openMirror opens the bare repository at dir, making it if needed, with
// its origin pointing at url.
func openMirror(dir, url string) (*gogit.Repository, error) {
	repo, err := gogit.PlainOpen(dir)
	if errors.Is(err, gogit.ErrRepositoryNotExists) {
		repo, err = gogit.PlainInit(dir, true)
	}
	if err != nil {
		return nil, err
	}
	rc := &config.RemoteConfig{Name: "origin", URLs: []string{url}}
	r, err := repo.Remote("origin")
	switch {
	case errors.Is(err, gogit.ErrRemoteNotFound):
	case err != nil:
		return nil, err
	case len(r.Config().URLs) == 1 && r.Config().URLs[0] == url:
		return repo, nil
	default:
		// The repository moved: keep the objects, follow the new URL.
		if err := repo.DeleteRemote("origin"); err != nil {
			return nil, err
		}
	}
	if _, err := repo.CreateRemote(rc); err != nil {
		return nil, err
	}
	return repo, nil
}

// ErrNoRef is wrapped by Mirror's error when the remote has no such ref
// (a branch deleted, or never pushed).
var ErrNoRef = errors.New("no such ref in the repository")

// ErrNoFile is returned by ReadFile for a path the commit does not have.
var ErrNoFile = errors.New("no such file in the commit")

// ReadFile returns the contents of path at rev (a commit hash, or a ref
// such as refs/heads/main) in the repository at mirror.
func ReadFile(ctx context.Context, mirror, rev, path string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := commitAt(mirror, rev)
	if err != nil {
		return nil, err
	}
	f, err := c.File(path)
	if errors.Is(err, object.ErrFileNotFound) {
		return nil, fmt.Errorf("%s at %s: %w", path, short(c.Hash.String()), ErrNoFile)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s at %s: %w", path, short(c.Hash.String()), err)
	}
	s, err := f.Contents()
	if err != nil {
		return nil, fmt.Errorf("read %s at %s: %w", path, short(c.Hash.String()), err)
	}
	return []byte(s), nil
}

// Resolve returns the commit hash rev (a branch's ref, a tag, a hash)
// names in the repository at mirror.
func Resolve(ctx context.Context, mirror, rev string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	c, err := commitAt(mirror, rev)
	if err != nil {
		return "", err
	}
	return c.Hash.String(), nil
}

// HasCommit reports whether the repository at mirror holds commit hash.
func HasCommit(mirror, hash string) bool {
	repo, err := gogit.PlainOpen(mirror)
	if err != nil {
		return false
	}
	_, err = repo.CommitObject(plumbing.NewHash(hash))
	return err == nil
}

func commitAt(mirror, rev string) (*object.Commit, error) {
	repo, err := gogit.PlainOpen(mirror)
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", mirror, err)
	}
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return nil, fmt.Errorf("resolve %s in %s: %w", rev, mirror, err)
	}
	c, err := repo.CommitObject(*h)
	if err != nil {
		return nil, fmt.Errorf("read commit %s in %s: %w", h, mirror, err)
	}
	return c, nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// MirrorPath is where the mirror of the repository called name lives
// under base: a readable name (unsafe characters replaced) and a hash of
// the name, so names that read alike still get mirrors of their own.
func MirrorPath(base, name string) string {
	safe := []byte(name)
	for i, c := range safe {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			safe[i] = '_'
		}
	}
	sum := sha256.Sum256([]byte(name))
	return filepath.Join(base, fmt.Sprintf("%s-%s.git", strings.TrimLeft(string(safe), "."), hex.EncodeToString(sum[:4])))
}
