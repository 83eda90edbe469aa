package git

import (
	"context"
	"fmt"

	gogit "github.com/go-git/go-git/v5"

	"github.com/jobrun/jobrun/internal/redact"
)

// Clone copies the repository at url (https, ssh, file:// or a local path)
// into dir, which must not exist or be empty: the objects and refs of every
// branch and tag, with no work tree checked out, ready for Export of any
// pushed commit. It is the pool agent's simple path until per-repository
// mirrors with incremental fetch land. Errors never show url's user name
// or password.
func Clone(ctx context.Context, url, dir string) error {
	_, err := gogit.PlainCloneContext(ctx, dir, false, &gogit.CloneOptions{
		URL:        url,
		NoCheckout: true,
		Tags:       gogit.AllTags,
	})
	if err != nil {
		return redact.Error(fmt.Errorf("clone %s: %w", redact.URL(url), err))
	}
	return nil
}
