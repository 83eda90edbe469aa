package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// TestCheckIDsRefusesUnmappableOwners: an image with a file owned by a
// uid or gid a job's user namespace cannot map is refused, naming the
// image, the layer, the file and its owner and what to do, from the
// record written at unpack and, for a layer unpacked before records were
// kept, from a scan of the layer; an image owned by ids up to 65535 passes.
func TestCheckIDsRefusesUnmappableOwners(t *testing.T) {
	s, _ := newStore(t, Options{})
	base := layerOf(t, entry{name: "etc/", typ: '5'}, entry{name: "etc/passwd", body: "root:x:0:0::/:/bin/sh\n"},
		entry{name: "home/", typ: '5', uid: 1000, gid: 1000}, entry{name: "home/u", body: "u", uid: 65535, gid: 65535})
	cases := []struct {
		name, want string
		layer      v1.Layer
	}{
		{"uid", "/opt/big owned by 100000:0", layerOf(t, entry{name: "opt/", typ: '5'}, entry{name: "opt/big", body: "b", uid: 100000})},
		{"gid", "/opt/grp owned by 0:65536", layerOf(t, entry{name: "opt/", typ: '5'}, entry{name: "opt/grp", body: "g", gid: 65536})},
		{"dir", "/srv owned by 70000:70000", layerOf(t, entry{name: "srv/", typ: '5', uid: 70000, gid: 70000})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, err := s.Resolve(context.Background(), writeLayout(t, imageOf(t, base, c.layer), c.name), "")
			if err != nil {
				t.Fatal(err)
			}
			top := img.Layers[1]
			want := regexp.QuoteMeta(fmt.Sprintf("image %s: layer %s (2 of 2) has %s; a job's user namespace maps ids 0-65535 only: rebuild the image with its files owned by ids below 65536", img.Ref, top.Digest, c.want)) +
				`.*userns = "off" in the agent config, jobrun local --userns off\)$`
			check := func(s *Store, what string) {
				t.Helper()
				if err := s.CheckIDs(img, 65536); err == nil || !regexp.MustCompile(want).MatchString(err.Error()) {
					t.Errorf("%s: %v, want %s", what, err, want)
				}
			}
			if _, err := os.Stat(s.idsPath(top.DiffID)); err != nil {
				t.Fatalf("no record written at unpack: %v", err)
			}
			check(s, "recorded at unpack")
			// A store from before the records: the layers are scanned
			// once and recorded.
			for _, l := range img.Layers {
				if err := os.Remove(s.idsPath(l.DiffID)); err != nil {
					t.Fatal(err)
				}
			}
			old := reopen(t, s)
			check(old, "scanned")
			if _, err := os.Stat(s.idsPath(top.DiffID)); err != nil {
				t.Errorf("the scan was not recorded: %v", err)
			}
			check(reopen(t, s), "recorded by the scan")
			// A bigger map takes it.
			if err := s.CheckIDs(img, 1<<20); err != nil {
				t.Errorf("size 1<<20: %v", err)
			}
		})
	}

	// Positive control: files owned by ids up to 65535 pass, recorded and
	// scanned.
	img, err := s.Resolve(context.Background(), writeLayout(t, imageOf(t, base), "ok"), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckIDs(img, 65536); err != nil {
		t.Errorf("ok image: %v", err)
	}
	if err := os.Remove(s.idsPath(img.Layers[0].DiffID)); err != nil {
		t.Fatal(err)
	}
	if err := reopen(t, s).CheckIDs(img, 65536); err != nil {
		t.Errorf("ok image, scanned: %v", err)
	}
	if err := s.CheckIDs(img, 65535); err == nil || !strings.Contains(err.Error(), "has /home/u owned by 65535:65535") {
		t.Errorf("size 65535: %v", err)
	}

	// An image whose config runs as a uid it cannot map.
	cf, _ := imageOf(t, base).ConfigFile()
	cf.Config.User = "70000:0"
	high, err := mutate.ConfigFile(imageOf(t, base), cf)
	if err != nil {
		t.Fatal(err)
	}
	img, err = s.Resolve(context.Background(), writeLayout(t, high, "user"), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckIDs(img, 65536); err == nil || !strings.Contains(err.Error(), `image `+img.Ref+`: its config runs as user "70000:0"; a job's user namespace maps ids 0-65535 only`) {
		t.Errorf("user 70000: %v", err)
	}
}

// reopen opens s's directory again, as a restarted agent does: nothing
// of s's memory is kept.
func reopen(t *testing.T, s *Store) *Store {
	t.Helper()
	s2, err := Open(s.Dir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s2
}

// TestCheckIDsFlattened: a flattened image is checked by the records of
// its layers, made as they were merged, and, for one merged before
// records were kept, by a scan of the merged tree.
func TestCheckIDsFlattened(t *testing.T) {
	img := imageOf(t, layerOf(t, entry{name: "a", body: "a"}))
	var err error
	for i := range 61 {
		e := entry{name: fmt.Sprintf("f%d", i), body: "x"}
		if i == 30 {
			e.uid = 100000
		}
		if img, err = mutate.AppendLayers(img, layerOf(t, e)); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := newStore(t, Options{})
	got, err := s.Resolve(context.Background(), writeLayout(t, img, "many"), "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Flat == "" {
		t.Fatalf("%d layers were not flattened", len(got.Layers))
	}
	want := fmt.Sprintf("image %s: layer %s (32 of 62) has /f30 owned by 100000:0;", got.Ref, got.Layers[31].Digest)
	if err := s.CheckIDs(got, 65536); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("flattened: %v, want %q", err, want)
	}
	for _, l := range got.Layers {
		os.Remove(s.idsPath(l.DiffID))
	}
	s = reopen(t, s)
	want = fmt.Sprintf("image %s: one of its 62 layers (merged in %s) has /f30 owned by 100000:0;", got.Ref, filepath.Join(s.Dir(), "flat", got.Flat))
	if err := s.CheckIDs(got, 65536); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("flattened, scanned: %v, want %q", err, want)
	}
	if err := s.CheckIDs(got, 1<<17); err != nil {
		t.Errorf("size 1<<17: %v", err)
	}
}

// TestPruneRemovesIDRecords: Prune removes the id records of the layers it
// removes and keeps those of the images it keeps.
func TestPruneRemovesIDRecords(t *testing.T) {
	s, _ := newStore(t, Options{})
	shared := layerOf(t, entry{name: "shared", body: "s"})
	keep, err := s.Resolve(context.Background(), writeLayout(t, imageOf(t, shared, layerOf(t, entry{name: "k", body: "k"})), "keep"), "")
	if err != nil {
		t.Fatal(err)
	}
	gone, err := s.Resolve(context.Background(), writeLayout(t, imageOf(t, shared, layerOf(t, entry{name: "g", body: "g"})), "gone"), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(gone.Ref); err != nil {
		t.Fatal(err)
	}
	res, err := s.Prune(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Layers != 1 {
		t.Errorf("pruned %d layers, want 1 (id records are not layers)", res.Layers)
	}
	if _, err := os.Stat(s.idsPath(gone.Layers[1].DiffID)); !os.IsNotExist(err) {
		t.Errorf("record of a pruned layer: %v", err)
	}
	for _, l := range keep.Layers {
		if _, err := os.Stat(s.idsPath(l.DiffID)); err != nil {
			t.Errorf("record of a kept layer: %v", err)
		}
	}
	if err := s.CheckIDs(keep, 65536); err != nil {
		t.Error(err)
	}
}

// BenchmarkCheckIDs is the per-job cost of the check on a 20-layer image
// whose records were written at unpack.
func BenchmarkCheckIDs(b *testing.B) {
	var layers []v1.Layer
	for i := range 20 {
		layers = append(layers, layerOf(b, entry{name: fmt.Sprintf("f%d", i), body: "x", uid: i}))
	}
	s, _ := newStore(b, Options{})
	img, err := s.Resolve(context.Background(), writeLayout(b, imageOf(b, layers...), "bench"), "")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := s.CheckIDs(img, 65536); err != nil {
			b.Fatal(err)
		}
	}
}
