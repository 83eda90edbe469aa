package cache

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jobrun/jobrun/internal/miniotest"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// payloadHeaders records the X-Amz-Content-Sha256 header of every request
// that writes object data (a PUT of an object or of a part).
type payloadHeaders struct {
	mu  sync.Mutex
	got []string
}

func (p *payloadHeaders) see(r *http.Request) {
	if k := miniotest.Kind(r); k == "PUT part" || k == "PUT object" {
		p.mu.Lock()
		p.got = append(p.got, r.Header.Get("X-Amz-Content-Sha256"))
		p.mu.Unlock()
	}
}

func (p *payloadHeaders) all() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.got...)
}

// saveAndRestore uploads a volume of a few MiB through m, then restores it
// through a second manager made by fresh, and checks the content arrived.
func saveAndRestore(t *testing.T, m *Manager, fresh func() *Manager) {
	t.Helper()
	req := Request{Repo: "github.com/a/app", Name: "deps", Key: "k", Upload: true}
	v := acquire(t, m, req)
	data := strings.Repeat("payload ", 3<<20/8)
	writeFile(t, filepath.Join(v.Path(), "big"), data)
	release(t, v, true)
	w := acquire(t, fresh(), req)
	if !w.Hit() || readFile(t, filepath.Join(w.Path(), "big")) != data {
		t.Fatal("the volume did not come back from the remote")
	}
	release(t, w, false)
}

// TestUploadSignsPayloadOverPlainHTTP: over plain HTTP nothing but the
// SigV4 signature protects an archive in flight, so every chunk of every
// part carries a SHA-256 signature (aws-chunked streaming signing) and
// the server refuses data that was altered on the way. Over TLS, which
// protects the bytes itself, the payload goes unsigned (a CRC trailer),
// as AWS's SDKs and minio-go do, which saves both ends a SHA-256 pass.
// The choice follows the endpoint's scheme; a cheaper upload that drops
// the signature over HTTP fails this test.
func TestUploadSignsPayloadOverPlainHTTP(t *testing.T) {
	cfg := miniotest.Config(t)
	cfg.Prefix = "caches"

	// Plain HTTP, through the counting proxy.
	proxy, pcfg := miniotest.NewProxy(t, cfg)
	var plain payloadHeaders
	proxy.FailWhen(func(r *http.Request) bool { plain.see(r); return false })
	m, _ := newManager(t, Options{Remote: &pcfg})
	saveAndRestore(t, m, func() *Manager { m, _ := newManager(t, Options{Remote: &pcfg}); return m })
	got := plain.all()
	if len(got) == 0 {
		t.Fatal("plain HTTP: the proxy saw no upload")
	}
	for _, h := range got {
		if !strings.HasPrefix(h, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD") {
			t.Errorf("plain HTTP: a part went up with X-Amz-Content-Sha256 %q, want a signed payload", h)
		}
	}

	// TLS: a TLS reverse proxy in front of the same MinIO, the client
	// trusting its certificate.
	target, err := url.Parse(cfg.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var tlsSeen payloadHeaders
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tlsSeen.see(r)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tcfg := cfg
	tcfg.Endpoint = srv.URL // https://
	tcfg.Prefix = "caches-tls"
	overTLS := func() *Manager {
		m, _ := newManager(t, Options{Remote: &tcfg})
		u, _ := url.Parse(srv.URL)
		c, err := minio.New(u.Host, &minio.Options{
			Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
			Secure:    true,
			Transport: srv.Client().Transport,
		})
		if err != nil {
			t.Fatal(err)
		}
		m.remote.c = c
		return m
	}
	saveAndRestore(t, overTLS(), overTLS)
	got = tlsSeen.all()
	if len(got) == 0 {
		t.Fatal("TLS: the proxy saw no upload")
	}
	for _, h := range got {
		if h != "UNSIGNED-PAYLOAD" && h != "STREAMING-UNSIGNED-PAYLOAD-TRAILER" {
			t.Errorf("TLS: a part went up with X-Amz-Content-Sha256 %q, want an unsigned payload", h)
		}
	}
}
