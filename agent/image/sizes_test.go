package image

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPruneRemembersSizes: a budget Prune remembers what each entry uses
// on disk and takes it from there while the entry stays the same (a
// remembered size, made up here, decides the next budget), and measures
// an entry again once it is made anew (its inode changed) or the record
// does not match it.
func TestPruneRemembersSizes(t *testing.T) {
	reg := newRegistry(t)
	push(t, reg.host+"/p/a:1", imageOf(t, layerOf(t, entry{name: "a", body: strings.Repeat("a", 1<<20)})))
	s, _ := newStore(t, Options{})
	ctx := context.Background()
	img, err := s.Pull(ctx, reg.host+"/p/a:1")
	if err != nil {
		t.Fatal(err)
	}
	// A budget far above the image: nothing goes, every entry is measured.
	if res, err := s.Prune(ctx, 1<<40); err != nil || len(res.Images) != 0 {
		t.Fatalf("prune = %+v, %v", res, err)
	}
	read := func() map[string]sizeRecord {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(s.dir, sizesFile))
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]sizeRecord{}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	layer := "layers/" + hexOf(img.Layers[0].DiffID)
	sizes := read()
	r, ok := sizes[layer]
	if !ok || r.Size < 1<<20 {
		t.Fatalf("the layer's remembered size: %+v (%v); want at least its 1 MiB file", r, ok)
	}
	var total int64
	for _, e := range s.entries(img) {
		total += sizes[e].Size
	}
	budget := total + 1<<20 // the image fits, by its real sizes
	write := func(m map[string]sizeRecord) {
		t.Helper()
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.dir, sizesFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Control: the same record with another inode is not the layer's: it
	// is measured again, the image fits and stays.
	stale := r
	stale.Ino++
	stale.Size = 1 << 40
	sizes[layer] = stale
	write(sizes)
	if res, err := s.Prune(ctx, budget); err != nil || len(res.Images) != 0 {
		t.Fatalf("a record of another inode was believed: prune = %+v, %v", res, err)
	}
	if got := read()[layer]; got != r {
		t.Errorf("measured again: %+v, want %+v", got, r)
	}
	// The layer's own record, with a size made up beyond the budget: it
	// is taken as it is, and the image goes.
	big := r
	big.Size = 1 << 40
	sizes[layer] = big
	write(sizes)
	res, err := s.Prune(ctx, budget)
	if err != nil || len(res.Images) != 1 {
		t.Fatalf("the remembered size was not used: prune = %+v, %v", res, err)
	}
	// The layer went with the image: it is forgotten.
	if _, ok := read()[layer]; ok {
		t.Error("a removed layer's size is still remembered")
	}
}
