package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/cache"
)

func runCache(t *testing.T, state string, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"--state-dir", state, "cache"}, args...))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestCacheLsPrune(t *testing.T) {
	state := t.TempDir()
	m, err := cache.Open(filepath.Join(state, "caches"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"gomod", "gobuild"} {
		v, err := m.Acquire(ctx, cache.Request{Repo: "github.com/a/app", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(v.Path(), "f"), bytes.Repeat([]byte("x"), 64<<10), 0o644)
		if err := v.Release(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
	held, err := m.Acquire(ctx, cache.Request{Repo: "github.com/a/app", Name: "gomod"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := runCache(t, state, "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"REPOSITORY", "github.com/a/app", "gomod", "gobuild", "in use", "idle", "KiB", "2 volumes"} {
		if !strings.Contains(out, want) {
			t.Errorf("cache ls output lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range [][]string{{"prune"}, {"prune", "--all", "--keep", "1GiB"}, {"prune", "--keep", "lots"}} {
		if _, err := runCache(t, state, bad...); err == nil || !isUsageError(err) {
			t.Errorf("cache %v: %v, want a usage error", bad, err)
		}
	}
	out, err = runCache(t, state, "prune", "--all")
	if err != nil || !strings.Contains(out, "evicted 1 volumes") {
		t.Fatalf("prune --all: %v\n%s", err, out)
	}
	held.Release(ctx, true)
	if list, _ := m.List(); len(list) != 1 || list[0].Name != "gomod" {
		t.Errorf("after prune --all with gomod in use: %+v", list)
	}
	out, err = runCache(t, state, "prune", "--keep", "1GiB")
	if err != nil || !strings.Contains(out, "evicted 0 volumes") {
		t.Fatalf("prune --keep 1GiB: %v\n%s", err, out)
	}
}
