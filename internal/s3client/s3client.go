// Package s3client builds the minio-go client that the cache and artifact
// stores share, from one configuration shape, so both talk to MinIO and AWS
// S3 the same way.
package s3client

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Config names a bucket on an S3-compatible server.
type Config struct {
	// Endpoint is host:port, or a URL (http:// or https://, which then
	// decides Secure, whatever Secure says).
	Endpoint  string
	Bucket    string
	AccessKey string
	SecretKey string
	// Prefix is prepended (with a slash) to every object name.
	Prefix string
	// Secure uses HTTPS.
	Secure bool
	// Region, if the server needs one.
	Region string
	// MaxRetries bounds the attempts per request, with backoff, on 5xx
	// and network errors; 0 means 5, 1 disables retries.
	MaxRetries int
}

// New returns a client for c. It does not contact the server.
func New(c Config) (*minio.Client, error) {
	host, secure := c.Endpoint, c.Secure
	if strings.Contains(host, "://") {
		u, err := url.Parse(host)
		if err != nil {
			return nil, fmt.Errorf("s3 endpoint %q: %w", c.Endpoint, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("s3 endpoint %q: want host:port or http(s)://host:port", c.Endpoint)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	if host == "" {
		return nil, fmt.Errorf("s3 endpoint is empty")
	}
	if c.Bucket == "" {
		return nil, fmt.Errorf("s3 bucket is empty")
	}
	retries := c.MaxRetries
	if retries <= 0 {
		retries = 5
	}
	cl, err := minio.New(host, &minio.Options{
		Creds:      credentials.NewStaticV4(c.AccessKey, c.SecretKey, ""),
		Secure:     secure,
		Region:     c.Region,
		MaxRetries: retries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint %q: %w", c.Endpoint, err)
	}
	return cl, nil
}

// Key joins the configured prefix and an object name.
func (c Config) Key(name string) string {
	p := strings.Trim(c.Prefix, "/")
	if p == "" {
		return name
	}
	return p + "/" + name
}

// EnsureBucket creates the bucket if it is missing. Its error says which
// server and bucket failed, so "MinIO is down" reads as such.
func EnsureBucket(ctx context.Context, cl *minio.Client, c Config) error {
	ok, err := cl.BucketExists(ctx, c.Bucket)
	if err != nil {
		return fmt.Errorf("s3 %s bucket %s: %w", c.Endpoint, c.Bucket, err)
	}
	if ok {
		return nil
	}
	if err := cl.MakeBucket(ctx, c.Bucket, minio.MakeBucketOptions{Region: c.Region}); err != nil {
		if r := minio.ToErrorResponse(err); r.Code == "BucketAlreadyOwnedByYou" {
			return nil
		}
		return fmt.Errorf("s3 %s: create bucket %s: %w", c.Endpoint, c.Bucket, err)
	}
	return nil
}

// ParseURL reads a bucket from
// s3://BUCKET[/PREFIX]?endpoint=E[&region=R][&insecure=true], the form the
// commands take. E is HOST:PORT, spoken to over TLS, or a URL whose scheme
// says: https:// for TLS, http:// for plain HTTP. insecure=true also means
// plain HTTP with a bare HOST:PORT (a local MinIO); plain HTTP is never
// the default, since the keys sign every request and the objects travel
// in clear. The keys come from the environment, JOBRUN_S3_ACCESS_KEY and
// JOBRUN_S3_SECRET_KEY, or else AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, so they stay out of process listings.
func ParseURL(raw string, getenv func(string) string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return Config{}, fmt.Errorf("%q: want s3://BUCKET[/PREFIX]?endpoint=HOST:PORT", raw)
	}
	q := u.Query()
	for k := range q {
		if k != "endpoint" && k != "region" && k != "insecure" {
			return Config{}, fmt.Errorf("%q: unknown parameter %q (want endpoint, region, insecure)", raw, k)
		}
	}
	c := Config{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/"), Endpoint: q.Get("endpoint"), Region: q.Get("region"), Secure: true}
	if c.Endpoint == "" {
		c.Endpoint = "https://s3.amazonaws.com"
	}
	insecure := false
	switch v := q.Get("insecure"); v {
	case "", "false":
	case "true":
		insecure = true
	default:
		return Config{}, fmt.Errorf("%q: insecure=%q: want true or false", raw, v)
	}
	switch {
	case strings.HasPrefix(c.Endpoint, "https://") && insecure:
		return Config{}, fmt.Errorf("%q: insecure=true contradicts the https:// endpoint", raw)
	case strings.HasPrefix(c.Endpoint, "http://") || insecure:
		c.Secure = false
	}
	c.AccessKey, c.SecretKey = getenv("JOBRUN_S3_ACCESS_KEY"), getenv("JOBRUN_S3_SECRET_KEY")
	if c.AccessKey == "" {
		c.AccessKey, c.SecretKey = getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
	}
	if c.AccessKey == "" || c.SecretKey == "" {
		return Config{}, fmt.Errorf("%q: no keys: set JOBRUN_S3_ACCESS_KEY and JOBRUN_S3_SECRET_KEY", raw)
	}
	return c, nil
}
