package image

import (
	"context"
	"encoding/pem"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPullTrustsCACerts: a registry whose certificate a private CA signed
// (httptest's) is refused by a store that trusts the system's CAs only,
// and pulled from by one given that CA in CACerts (the config's ca_file,
// which jobs trust too: what they push, the agent pulls). Input that holds
// no certificate is refused when the store opens.
func TestPullTrustsCACerts(t *testing.T) {
	srv := httptest.NewTLSServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	ref := host + "/private/ca:latest"
	img := imageOf(t, layerOf(t, entry{name: "hello", body: "behind a private CA"}))
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithTransport(srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	plain, _ := newStore(t, Options{})
	if _, err := plain.Pull(context.Background(), ref); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA: %v, want a certificate error", err)
	}
	trusting, _ := newStore(t, Options{CACerts: ca})
	got, err := trusting.Pull(context.Background(), ref)
	if err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	if d, _ := img.Digest(); got.Digest != d.String() {
		t.Errorf("pulled %s, want %s", got.Digest, d)
	}

	if _, err := Open(t.TempDir(), Options{CACerts: []byte("not a certificate\n")}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("CACerts without a certificate: %v", err)
	}
}
