// Package miniotest gives tests a bucket of their own on the real MinIO
// server that scripts/services.sh starts, and a reverse proxy in front of it
// that counts requests and fails the ones a test chooses, to exercise
// retries and failure paths against the real server.
package miniotest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/jobrun/jobrun/internal/s3client"
	"github.com/jobrun/jobrun/internal/testenv"
	"github.com/minio/minio-go/v7"
)

// Config returns the configuration of a fresh, empty bucket on the test
// MinIO, removed with its objects when t ends. It skips t when no MinIO is
// configured.
func Config(t testing.TB) s3client.Config {
	t.Helper()
	ep := testenv.RequireEnv(t, "JOBRUN_TEST_MINIO", "a MinIO server")
	c := s3client.Config{
		Endpoint:  ep,
		AccessKey: testenv.RequireEnv(t, "JOBRUN_TEST_MINIO_ACCESS_KEY", "MinIO access key"),
		SecretKey: testenv.RequireEnv(t, "JOBRUN_TEST_MINIO_SECRET_KEY", "MinIO secret key"),
		Bucket:    "test-" + randHex(6),
	}
	cl := Client(t, c)
	ctx := context.Background()
	if err := cl.MakeBucket(ctx, c.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s on %s: %v", c.Bucket, ep, err)
	}
	t.Cleanup(func() {
		for o := range cl.ListObjects(ctx, c.Bucket, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err == nil {
				cl.RemoveObject(ctx, c.Bucket, o.Key, minio.RemoveObjectOptions{})
			}
		}
		if err := cl.RemoveBucket(ctx, c.Bucket); err != nil {
			t.Errorf("remove bucket %s: %v", c.Bucket, err)
		}
	})
	return c
}

// Client returns a client for c that does not retry.
func Client(t testing.TB, c s3client.Config) *minio.Client {
	t.Helper()
	c.MaxRetries = 1
	cl, err := s3client.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// Objects lists every object name in c's bucket.
func Objects(t testing.TB, c s3client.Config) []string {
	t.Helper()
	var out []string
	for o := range Client(t, c).ListObjects(context.Background(), c.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list %s: %v", c.Bucket, o.Err)
		}
		out = append(out, o.Key)
	}
	return out
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Proxy is a reverse proxy in front of the real MinIO.
type Proxy struct {
	// URL is the proxy's address, to use as the endpoint.
	URL string

	mu     sync.Mutex
	counts map[string]int
	failed int
	fail   func(r *http.Request) bool
}

// NewProxy starts a proxy to the MinIO endpoint of c (closed when t ends)
// and returns it with a copy of c that points at it.
func NewProxy(t testing.TB, c s3client.Config) (*Proxy, s3client.Config) {
	t.Helper()
	target, err := url.Parse(c.Endpoint)
	if err != nil || target.Host == "" {
		t.Fatalf("minio endpoint %q: want http://host:port", c.Endpoint)
	}
	p := &Proxy{counts: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.counts[Kind(r)]++
		fail := p.fail != nil && p.fail(r)
		if fail {
			p.failed++
		}
		p.mu.Unlock()
		if fail {
			// Drain the body like a server that read the upload and then
			// failed, so the client sees the 500 and not a broken pipe.
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>` +
				`<Message>injected by the test proxy</Message></Error>`))
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	c.Endpoint = srv.URL
	return p, c
}

// Kind names a request for counting: "PUT object", "PUT part",
// "POST multipart", "GET", "HEAD", "DELETE" and so on.
func Kind(r *http.Request) string {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPut && q.Has("partNumber"):
		return "PUT part"
	case r.Method == http.MethodPut && strings.Count(strings.Trim(r.URL.Path, "/"), "/") >= 1:
		return "PUT object"
	case r.Method == http.MethodPost && (q.Has("uploads") || q.Has("uploadId")):
		return "POST multipart"
	}
	return r.Method
}

// FailWhen makes the proxy answer 500 to every request fail accepts;
// nil stops failing.
func (p *Proxy) FailWhen(fail func(r *http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = fail
}

// Count returns how many requests of kind (see Kind) the proxy saw.
func (p *Proxy) Count(kind string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[kind]
}

// Writes returns how many object-writing requests (PUT and multipart POST)
// the proxy saw.
func (p *Proxy) Writes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts["PUT object"] + p.counts["PUT part"] + p.counts["POST multipart"]
}

// Failed returns how many requests the proxy failed on purpose.
func (p *Proxy) Failed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}
