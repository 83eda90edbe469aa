package git

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/server"
	"github.com/go-git/go-git/v5/storage"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// CommitRef is the one ref ServeRefs advertises: the commit served.
const CommitRef = "refs/jobrun/commit"

// ErrBadFetch is wrapped by UploadCommit's error for a request it does not
// serve: not git's, another object than the commit, or shallow.
var ErrBadFetch = errors.New("bad fetch request")

// ServeRefs writes git's smart-HTTP reference advertisement
// (GET .../info/refs?service=git-upload-pack) of a bare mirror that shows
// only commit, as CommitRef: a client can fetch that commit (and its
// history) and nothing else of the mirror.
func ServeRefs(w io.Writer, mirror, commit string) error {
	_, h, err := commitIn(mirror, commit)
	if err != nil {
		return err
	}
	ar := packp.NewAdvRefs()
	ar.Prefix = [][]byte{[]byte("# service=git-upload-pack"), pktline.Flush}
	if err := ar.Capabilities.Set(capability.Agent, capability.DefaultAgent()); err != nil {
		return err
	}
	if err := ar.Capabilities.Set(capability.OFSDelta); err != nil {
		return err
	}
	ar.References[CommitRef] = h
	return ar.Encode(w)
}

// UploadCommit answers a git-upload-pack request (POST
// .../git-upload-pack) from a bare mirror with a pack of commit and what
// it reaches, less what the client says it has. A request that wants any
// other object, or a shallow one, is refused with ErrBadFetch.
func UploadCommit(ctx context.Context, w io.Writer, body io.Reader, mirror, commit string) error {
	st, h, err := commitIn(mirror, commit)
	if err != nil {
		return err
	}
	req := packp.NewUploadPackRequest()
	if err := req.Decode(body); err != nil {
		return fmt.Errorf("%w: %v", ErrBadFetch, err)
	}
	if len(req.Wants) == 0 {
		return fmt.Errorf("%w: it wants nothing", ErrBadFetch)
	}
	for _, want := range req.Wants {
		if want != h {
			return fmt.Errorf("%w: it wants %s, and only %s is served", ErrBadFetch, want, short(commit))
		}
	}
	if len(req.Shallows) > 0 || !req.Depth.IsZero() {
		return fmt.Errorf("%w: shallow fetches are not served", ErrBadFetch)
	}
	// What the client has that this mirror lacks (it pruned a
	// force-pushed branch) cannot be walked; it only makes the pack
	// bigger.
	haves := req.Haves[:0]
	for _, hv := range req.Haves {
		if st.HasEncodedObject(hv) == nil {
			haves = append(haves, hv)
		}
	}
	req.Haves = haves
	sess, err := server.NewServer(storeLoader{st}).NewUploadPackSession(&transport.Endpoint{}, nil)
	if err != nil {
		return err
	}
	resp, err := sess.UploadPack(ctx, req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadFetch, err)
	}
	defer resp.Close()
	return resp.Encode(w)
}

// commitIn opens a bare mirror and checks it holds commit.
func commitIn(mirror, commit string) (storage.Storer, plumbing.Hash, error) {
	h := plumbing.NewHash(commit)
	if len(commit) != 40 || h.IsZero() || h.String() != commit {
		return nil, h, fmt.Errorf("%w: commit %q: want a full hash", ErrBadFetch, commit)
	}
	st := filesystem.NewStorage(osfs.New(mirror), cache.NewObjectLRUDefault())
	if _, err := object.GetCommit(st, h); err != nil {
		return nil, h, fmt.Errorf("mirror %s: commit %s: %w", mirror, short(commit), err)
	}
	return st, h, nil
}

// storeLoader hands go-git's upload-pack server one open repository.
type storeLoader struct{ st storage.Storer }

func (l storeLoader) Load(*transport.Endpoint) (storer.Storer, error) { return l.st, nil }
