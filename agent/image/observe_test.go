package image

import (
	"context"
	"sync"
	"testing"
	"time"
)

// countingObserver records what a store reports.
type countingObserver struct {
	mu       sync.Mutex
	fetched  map[string]int // "source result"
	unpacked int
}

func (o *countingObserver) Fetched(source string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r := "ok"
	if err != nil {
		r = "error"
	}
	o.fetched[source+" "+r]++
}

func (o *countingObserver) Unpacked(d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if d > 0 {
		o.unpacked++
	}
}

// TestObserver: a pull reports one fetch and an unpack per new layer; a
// second pull of the same image unpacks nothing; a pull of an image the
// registry lacks reports an error.
func TestObserver(t *testing.T) {
	reg := newRegistry(t)
	img := imageOf(t,
		layerOf(t, entry{name: "etc/", typ: '5'}, entry{name: "etc/a", body: "a\n"}),
		layerOf(t, entry{name: "etc/b", body: "b\n"}))
	ref := reg.host + "/test/observe:1"
	push(t, ref, img)
	s, _ := newStore(t, Options{})
	o := &countingObserver{fetched: map[string]int{}}
	s.SetObserver(o)
	ctx := context.Background()
	if _, err := s.Pull(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if o.fetched["registry ok"] != 1 || o.unpacked != 2 {
		t.Fatalf("first pull: fetched %v, unpacked %d; want one ok fetch and two unpacks", o.fetched, o.unpacked)
	}
	if _, err := s.Pull(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if o.fetched["registry ok"] != 2 || o.unpacked != 2 {
		t.Fatalf("second pull: fetched %v, unpacked %d; want a second fetch and no new unpack", o.fetched, o.unpacked)
	}
	if _, err := s.Pull(ctx, reg.host+"/test/missing:1"); err == nil {
		t.Fatal("pull of a missing image worked")
	}
	if o.fetched["registry error"] != 1 {
		t.Fatalf("failed pull: fetched %v, want one error", o.fetched)
	}
}
