package s3client_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/miniotest"
	"github.com/jobrun/jobrun/internal/s3client"
)

// TestParseURLDefaultsToTLS: the documented endpoint=HOST:PORT speaks TLS;
// plain HTTP needs an http:// endpoint or insecure=true. Before, a bare
// HOST:PORT was always plain HTTP, keys and objects in clear.
func TestParseURLDefaultsToTLS(t *testing.T) {
	env := func(k string) string {
		return map[string]string{"JOBRUN_S3_ACCESS_KEY": "ak", "JOBRUN_S3_SECRET_KEY": "sk"}[k]
	}
	for raw, secure := range map[string]bool{
		"s3://b?endpoint=s3.example.com:443":               true,
		"s3://b?endpoint=https://s3.example.com":           true,
		"s3://b":                                           true,
		"s3://b?endpoint=127.0.0.1:9000&insecure=true":     false,
		"s3://b?endpoint=http://127.0.0.1:9000":            false,
		"s3://b?endpoint=127.0.0.1:9000&insecure=false":    true,
		"s3://b?endpoint=http://127.0.0.1:9000&region=eu1": false,
	} {
		c, err := s3client.ParseURL(raw, env)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", raw, err)
			continue
		}
		if c.Secure != secure {
			t.Errorf("ParseURL(%q).Secure = %v, want %v", raw, c.Secure, secure)
		}
	}
	for raw, msg := range map[string]string{
		"s3://b?endpoint=https://h:1&insecure=true": "contradicts",
		"s3://b?endpoint=h:1&insecure=yes":          `insecure="yes"`,
	} {
		if _, err := s3client.ParseURL(raw, env); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseURL(%q) = %v, want %q", raw, err, msg)
		}
	}
}

// TestBareEndpointSpeaksTLS: against the test MinIO (plain HTTP), the bare
// HOST:PORT form is refused, since the client speaks TLS, and the same
// endpoint with insecure=true (or http://) works.
func TestBareEndpointSpeaksTLS(t *testing.T) {
	mc := miniotest.Config(t)
	u, err := url.Parse(mc.Endpoint)
	if err != nil || u.Scheme != "http" {
		t.Fatalf("JOBRUN_TEST_MINIO %q: want http://HOST:PORT", mc.Endpoint)
	}
	env := func(k string) string {
		return map[string]string{"JOBRUN_S3_ACCESS_KEY": mc.AccessKey, "JOBRUN_S3_SECRET_KEY": mc.SecretKey}[k]
	}
	try := func(query string) error {
		c, err := s3client.ParseURL("s3://"+mc.Bucket+"?endpoint="+query, env)
		if err != nil {
			t.Fatal(err)
		}
		c.MaxRetries = 1
		cl, err := s3client.New(c)
		if err != nil {
			t.Fatal(err)
		}
		return s3client.EnsureBucket(context.Background(), cl, c)
	}
	err = try(u.Host)
	if err == nil {
		t.Fatalf("endpoint=%s reached a plain-HTTP server: not TLS", u.Host)
	}
	if !strings.Contains(err.Error(), "HTTPS") && !strings.Contains(err.Error(), "tls") {
		t.Fatalf("endpoint=%s: %v, want a TLS failure", u.Host, err)
	}
	for _, q := range []string{u.Host + "&insecure=true", url.QueryEscape(mc.Endpoint)} {
		if err := try(q); err != nil {
			t.Errorf("endpoint=%s: %v", q, err)
		}
	}
}
