package artifacts

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/jobrun/jobrun/internal/s3client"
)

// Open opens the store a command's --artifacts names: an S3 bucket as
// s3://BUCKET[/PREFIX]?endpoint=HOST:PORT (over TLS unless
// &insecure=true or an http:// endpoint; keys from the environment; see
// s3client.ParseURL), or else a local directory.
func Open(ctx context.Context, spec string, getenv func(string) string) (Store, error) {
	if strings.HasPrefix(spec, "s3://") {
		cfg, err := s3client.ParseURL(spec, getenv)
		if err != nil {
			return nil, err
		}
		return NewS3(ctx, cfg, S3Options{})
	}
	dir, err := filepath.Abs(spec)
	if err != nil {
		return nil, err
	}
	return NewLocal(dir)
}
