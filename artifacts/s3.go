package artifacts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jobrun/jobrun/internal/s3client"
	"github.com/minio/minio-go/v7"
)

// S3Config names the bucket of an S3 store.
type S3Config = s3client.Config

// S3Options tune how an S3 store uploads large files.
type S3Options struct {
	// PartSize is the multipart part size; 0 means 16 MiB. Files up to one
	// part go up in a single PUT.
	PartSize uint64
	// PartThreads is how many parts of one file go up at once; 0 means 4.
	PartThreads uint
}

// S3 is a Store in an S3-compatible bucket (MinIO, AWS S3), with the same
// layout as Local under the configured prefix. minio-go retries each
// request with backoff on 5xx and network errors (Config.MaxRetries times)
// before an upload fails.
type S3 struct {
	cfg  S3Config
	c    *minio.Client
	opts S3Options
}

// NewS3 connects to the bucket, creating it if missing; an unreachable
// server is an error here, not at the first upload.
func NewS3(ctx context.Context, cfg S3Config, opts S3Options) (*S3, error) {
	c, err := s3client.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("artifacts: %w", err)
	}
	if err := s3client.EnsureBucket(ctx, c, cfg); err != nil {
		return nil, fmt.Errorf("artifacts: %w", err)
	}
	if opts.PartSize == 0 {
		opts.PartSize = 16 << 20
	}
	if opts.PartThreads == 0 {
		opts.PartThreads = 4
	}
	return &S3{cfg: cfg, c: c, opts: opts}, nil
}

func (s *S3) key(name string) string { return s.cfg.Key(name) }

// fail wraps a request error with where it went and how often it was tried.
func (s *S3) fail(op, key string, err error) error {
	tries := s.cfg.MaxRetries
	if tries <= 0 {
		tries = 5
	}
	return fmt.Errorf("%s s3://%s/%s on %s (tried %d times): %w", op, s.cfg.Bucket, key, s.cfg.Endpoint, tries, err)
}

func isCode(err error, code string, status int) bool {
	r := minio.ToErrorResponse(err)
	return r.Code == code || (status != 0 && r.StatusCode == status)
}

// Begin claims the attempt with a conditional PUT (If-None-Match: *), so of
// two writers exactly one wins, without a listing race.
func (s *S3) Begin(ctx context.Context, ref Ref) error {
	if err := ref.Validate(); err != nil {
		return err
	}
	key := s.key(claimName(ref))
	opts := minio.PutObjectOptions{ContentType: "text/plain"}
	opts.SetMatchETagExcept("*")
	stamp := []byte(time.Now().UTC().Format(time.RFC3339Nano))
	_, err := s.c.PutObject(ctx, s.cfg.Bucket, key, bytes.NewReader(stamp), int64(len(stamp)), opts)
	if isCode(err, "PreconditionFailed", http.StatusPreconditionFailed) {
		return fmt.Errorf("artifacts: %s: %w", ref, ErrAttemptExists)
	}
	if err != nil {
		return fmt.Errorf("artifacts: claim %s: %w", ref, s.fail("put", key, err))
	}
	return nil
}

// Put uploads one file; above PartSize in parallel parts.
func (s *S3) Put(ctx context.Context, ref Ref, p string, r io.ReaderAt, size int64) error {
	if err := checkPath(p); err != nil {
		return err
	}
	key := s.key(ref.String() + "/" + p)
	_, err := s.c.PutObject(ctx, s.cfg.Bucket, key, io.NewSectionReader(r, 0, size), size, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    s.opts.PartSize,
		NumThreads:  s.opts.PartThreads,
	})
	if err != nil {
		return s.fail("put", key, err)
	}
	return nil
}

// Commit writes the manifest, conditionally: never over another one.
func (s *S3) Commit(ctx context.Context, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	key := s.key(manifestName(m.Ref()))
	opts := minio.PutObjectOptions{ContentType: "application/json"}
	opts.SetMatchETagExcept("*")
	_, err = s.c.PutObject(ctx, s.cfg.Bucket, key, bytes.NewReader(b), int64(len(b)), opts)
	if isCode(err, "PreconditionFailed", http.StatusPreconditionFailed) {
		return fmt.Errorf("artifacts: %s: %w", m.Ref(), ErrAttemptExists)
	}
	if err != nil {
		return fmt.Errorf("artifacts: manifest of %s: %w", m.Ref(), s.fail("put", key, err))
	}
	return nil
}

// Abort removes the attempt's files and claim.
func (s *S3) Abort(ctx context.Context, ref Ref) error { return s.remove(ctx, ref) }

func (s *S3) remove(ctx context.Context, ref Ref) error {
	objs := make(chan minio.ObjectInfo)
	var listErr error
	go func() {
		defer close(objs)
		for o := range s.c.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.key(ref.String() + "/"), Recursive: true}) {
			if o.Err != nil {
				listErr = o.Err
				return
			}
			objs <- o
		}
		objs <- minio.ObjectInfo{Key: s.key(manifestName(ref))}
		objs <- minio.ObjectInfo{Key: s.key(claimName(ref))}
	}()
	var errs []error
	for e := range s.c.RemoveObjects(ctx, s.cfg.Bucket, objs, minio.RemoveObjectsOptions{}) {
		if !isCode(e.Err, "NoSuchKey", 0) {
			errs = append(errs, fmt.Errorf("remove %s: %w", e.ObjectName, e.Err))
		}
	}
	if listErr != nil {
		errs = append(errs, listErr)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("artifacts: remove %s: %w", ref, err)
	}
	return nil
}

// Manifest reads the attempt's manifest.
func (s *S3) Manifest(ctx context.Context, ref Ref) (*Manifest, error) {
	if err := ref.Validate(); err != nil {
		return nil, err
	}
	key := s.key(manifestName(ref))
	obj, err := s.c.GetObject(ctx, s.cfg.Bucket, key, minio.GetObjectOptions{})
	if err == nil {
		defer obj.Close()
		var m Manifest
		if err = json.NewDecoder(obj).Decode(&m); err == nil {
			return &m, nil
		}
	}
	if isCode(err, "NoSuchKey", http.StatusNotFound) {
		return nil, fmt.Errorf("artifacts: %s: %w", ref, ErrNotFound)
	}
	return nil, fmt.Errorf("artifacts: manifest of %s: %w", ref, s.fail("get", key, err))
}

// Open reads one stored file of a complete attempt.
func (s *S3) Open(ctx context.Context, ref Ref, p string) (io.ReadCloser, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	if _, err := s.Manifest(ctx, ref); err != nil {
		return nil, err
	}
	key := s.key(ref.String() + "/" + p)
	obj, err := s.c.GetObject(ctx, s.cfg.Bucket, key, minio.GetObjectOptions{})
	if err == nil {
		_, err = obj.Stat() // GetObject is lazy: surface a missing key now
		if err != nil {
			obj.Close()
		}
	}
	if isCode(err, "NoSuchKey", http.StatusNotFound) {
		return nil, fmt.Errorf("artifacts: %s of %s: %w", p, ref, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("artifacts: %s", s.fail("get", key, err))
	}
	return obj, nil
}

// List returns the complete attempts of a run.
func (s *S3) List(ctx context.Context, repo, run string) ([]Ref, error) {
	probe := Ref{Repo: repo, Run: run, Job: "x", Attempt: 1}
	if err := probe.Validate(); err != nil {
		return nil, err
	}
	runPrefix := s.key(repo + "/" + run + "/")
	var out []Ref
	for j := range s.c.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: runPrefix}) {
		if j.Err != nil {
			return nil, fmt.Errorf("artifacts: %s", s.fail("list", runPrefix, j.Err))
		}
		job, ok := strings.CutSuffix(strings.TrimPrefix(j.Key, runPrefix), "/")
		if !ok {
			continue
		}
		for o := range s.c.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: j.Key}) {
			if o.Err != nil {
				return nil, fmt.Errorf("artifacts: %s", s.fail("list", j.Key, o.Err))
			}
			if n, ok := parseAttempt(strings.TrimPrefix(o.Key, j.Key), manifestSuffix); ok {
				out = append(out, Ref{Repo: repo, Run: run, Job: job, Attempt: n})
			}
		}
	}
	sortRefs(out)
	return out, nil
}

// Sweep lists the claims in the bucket and removes expired and abandoned
// attempts (see Store.Sweep). A bucket lifecycle rule can do the same
// server-side; Sweep needs no bucket configuration.
func (s *S3) Sweep(ctx context.Context, now time.Time) ([]Ref, error) {
	base := strings.Trim(s.cfg.Prefix, "/")
	if base != "" {
		base += "/"
	}
	var removed []Ref
	var errs []error
	for o := range s.c.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: base, Recursive: true}) {
		if o.Err != nil {
			return removed, fmt.Errorf("artifacts: sweep: %w", o.Err)
		}
		rest := strings.TrimPrefix(o.Key, base)
		if !strings.HasSuffix(rest, claimSuffix) {
			continue
		}
		parts := strings.Split(rest, "/")
		if len(parts) < 4 {
			continue
		}
		n, ok := parseAttempt(parts[len(parts)-1], claimSuffix)
		ref := Ref{Repo: strings.Join(parts[:len(parts)-3], "/"), Run: parts[len(parts)-3], Job: parts[len(parts)-2], Attempt: n}
		if !ok || ref.Validate() != nil {
			continue
		}
		m, err := s.Manifest(ctx, ref)
		var expired bool
		switch {
		case errors.Is(err, ErrNotFound):
			expired = now.Sub(o.LastModified) > abandonedAfter
		case err != nil:
			errs = append(errs, err)
			continue
		default:
			expired = !m.Expires.IsZero() && m.Expires.Before(now)
		}
		if !expired {
			continue
		}
		if err := s.remove(ctx, ref); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, ref)
		}
	}
	return removed, errors.Join(errs...)
}

// Presign returns a URL that reads one stored file of a complete attempt
// for the given time, without credentials: the scheduler redirects
// downloads there instead of relaying the bytes.
func (s *S3) Presign(ctx context.Context, ref Ref, p string, expiry time.Duration) (*url.URL, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	if _, err := s.Manifest(ctx, ref); err != nil {
		return nil, err
	}
	key := s.key(ref.String() + "/" + p)
	u, err := s.c.PresignedGetObject(ctx, s.cfg.Bucket, key, expiry, nil)
	if err != nil {
		return nil, fmt.Errorf("artifacts: %s", s.fail("presign", key, err))
	}
	return u, nil
}
