package image

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// rootImage is imageOf run as root (its config's user "0:0").
func rootImage(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := imageOf(t, layers...)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.User = "0:0"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestMappedIDsRefusesOtherOwners: a store in a namespace mapping one id
// (jobrun without root, own-uid mode: Options.MappedIDs 1) refuses a
// layer with a file owned by another id before unpacking it, naming the
// image, the layer, the file, its owner and MappedFix, and keeps nothing
// of it; a hard link and a whiteout, which have no owner of their own,
// pass; an image owned by 0:0 is taken (the positive control). An image
// stored with a wider map is refused by CheckMapped, as is one whose
// config runs as another user.
func TestMappedIDsRefusesOtherOwners(t *testing.T) {
	const fix = "get more ids"
	s, dir := newStore(t, Options{MappedIDs: 1, MappedFix: fix})
	ctx := context.Background()
	rootOnly := layerOf(t, entry{name: "etc/", typ: '5'}, entry{name: "etc/passwd", body: "root:x:0:0::/:/bin/sh\n"},
		entry{name: "etc/link", typ: '1', link: "etc/passwd"}, entry{name: "etc/.wh.gone", body: ""})
	for _, c := range []struct{ name, file, owner string }{
		{"gid", "/etc/shadow", "0:42"},
		{"uid", "/home/u", "1000:0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var other entry
			if c.name == "gid" {
				other = entry{name: "etc/shadow", body: "s", gid: 42}
			} else {
				other = entry{name: "home/u", body: "u", uid: 1000}
			}
			ref := writeLayout(t, rootImage(t, rootOnly, layerOf(t, other)), c.name)
			_, err := s.Resolve(ctx, ref, "")
			want := regexp.MustCompile(`^image \S+: layer [0-9a-f]+: ` + regexp.QuoteMeta(c.file+" is owned by "+c.owner+"; "+fix) + `$`)
			if err == nil || !want.MatchString(err.Error()) {
				t.Fatalf("got %v, want %s", err, want)
			}
			out, _ := filepath.Glob(filepath.Join(dir, "images", "layers", "*", strings.TrimPrefix(c.file, "/")))
			if len(out) > 0 {
				t.Errorf("the refused layer was unpacked: %v", out)
			}
		})
	}
	img, err := s.Resolve(ctx, writeLayout(t, rootImage(t, rootOnly), "root"), "")
	if err != nil {
		t.Fatalf("an image owned by 0:0 only: %v", err)
	}
	if err := s.CheckMapped(img); err != nil {
		t.Errorf("CheckMapped of an image owned by 0:0 only: %v", err)
	}

	// Stored by a store that maps every id, then checked by one that maps
	// only 0, at a job's start.
	wide, wideDir := newStore(t, Options{})
	multi, err := wide.Resolve(ctx, writeLayout(t, rootImage(t, rootOnly, layerOf(t, entry{name: "etc/shadow", body: "s", gid: 42})), "multi"), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := wide.CheckMapped(multi); err != nil {
		t.Errorf("a store without a map refused: %v", err)
	}
	narrow, err := Open(filepath.Join(wideDir, "images"), Options{MappedIDs: 1, MappedFix: fix})
	if err != nil {
		t.Fatal(err)
	}
	err = narrow.CheckMapped(multi)
	want := "image " + multi.Ref + ": layer " + multi.Layers[1].Digest + " (2 of 2) has /etc/shadow owned by 0:42; " + fix
	if err == nil || err.Error() != want {
		t.Errorf("CheckMapped: got %v, want %s", err, want)
	}
	nobody, err := wide.Resolve(ctx, writeLayout(t, imageOf(t, rootOnly), "nobody"), "")
	if err != nil {
		t.Fatal(err)
	}
	want = "image " + nobody.Ref + `: its config runs as user "65534"; ` + fix
	if err := narrow.CheckMapped(nobody); err == nil || err.Error() != want {
		t.Errorf("CheckMapped of an image run as 65534: got %v, want %s", err, want)
	}
}
