package git

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/gittest"
)

// TestErrorsHideURLToken fetches and clones from a real git server over
// HTTP with the token in the URL: a refused one is not in the errors,
// which still name the URL; the right one fetches (the control).
func TestErrorsHideURLToken(t *testing.T) {
	ctx := context.Background()
	w := gittest.New(t)
	head := w.Commit("first", map[string]string{"README": "hi\n"})
	bare := w.Bare()
	w.Git("push", "-q", "origin", "main")
	url := gittest.Serve(t, filepath.Dir(bare), "right-token-1") + "/" + filepath.Base(bare)
	with := func(tok string) string { return strings.Replace(url, "http://", "http://oauth2:"+tok+"@", 1) }

	m := filepath.Join(t.TempDir(), "r.git")
	err := Mirror(ctx, m, with("wrong-token-2"), MirrorOptions{})
	if err == nil || strings.Contains(err.Error(), "wrong-token-2") || !strings.Contains(err.Error(), "fetch "+url) {
		t.Fatalf("mirror with a wrong token: %v, want an error naming %s without the token", err, url)
	}
	err = Clone(ctx, with("wrong-token-2"), t.TempDir())
	if err == nil || strings.Contains(err.Error(), "wrong-token-2") || !strings.Contains(err.Error(), "clone "+url) {
		t.Fatalf("clone with a wrong token: %v, want an error naming %s without the token", err, url)
	}
	if err := Mirror(ctx, m, with("right-token-1"), MirrorOptions{}); err != nil {
		t.Fatal(err)
	}
	if h, err := Resolve(ctx, m, "refs/heads/main"); err != nil || h != head {
		t.Fatalf("main = %s, %v; want %s", h, err, head)
	}
}
