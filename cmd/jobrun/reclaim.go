package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/agent"
	"github.com/jobrun/jobrun/agent/image"
	"github.com/jobrun/jobrun/agent/network"
	"github.com/jobrun/jobrun/agent/workspace"
	"github.com/jobrun/jobrun/cache"
)

// reclaimOrphans removes what killed processes left in other state dirs:
// those the sandbox's Cleanup found no live process using
// (sandbox.Runtime.OrphanedStateDirs). Such a state dir may never be
// opened again (a killed test's, a killed `jobrun local --state-dir X`'s),
// so nothing else would unmount its snapshots, idmapped layer views,
// workspaces and cache overlays, or its jobs' network namespaces.
//
// Each state dir gets the start-up clean-ups openHost runs for its own
// (of the caches', the part that unmounts), in a form that opens nothing
// there: no config read or written, no store made (removing a job's
// network needs none of its state dir's config). Every one removes only
// entries whose lock (lockfile) no live process holds, and every entry's
// lock is taken before the entry is made, so a process that opens the
// state dir meanwhile, or one that was using it all along, keeps all of
// its own. (A job's network has its lock inside its entry: a Setup in the
// instant between the two fails as "in use" and removes nothing, as with
// two processes sharing a state dir.) Only what those clean-ups remove goes: a mount jobrun did not
// make (a disk at STATE/caches) is never touched. Failures are warnings:
// another state dir never fails this one's start.
func reclaimOrphans(ctx context.Context, log hclog.Logger, dirs []string, rootless bool) {
	for _, dir := range dirs {
		if err := ownedStateDir(dir); err != nil {
			log.Warn("not cleaning up after a killed process", "state_dir", dir, "error", err)
			continue
		}
		cleanups := []struct {
			what string
			f    func(context.Context) error
		}{
			{"snapshots and idmapped layer views", func(ctx context.Context) error {
				return image.CleanupDir(ctx, filepath.Join(dir, "images"), log.Named("image"))
			}},
			{"workspaces", func(ctx context.Context) error {
				return workspace.Cleanup(ctx, filepath.Join(dir, "work", "workspaces"))
			}},
			{"scratch dirs", func(ctx context.Context) error { return agent.CleanupScratch(ctx, filepath.Join(dir, "work")) }},
			{"networks", func(ctx context.Context) error {
				return network.CleanupStateDir(ctx, network.Options{StateDir: dir, Rootless: rootless, Log: log.Named("network")})
			}},
			{"private cache overlays", func(context.Context) error {
				return cache.CleanupDir(filepath.Join(dir, "caches"), log.Named("cache"))
			}},
		}
		for _, c := range cleanups {
			if err := c.f(ctx); err != nil {
				log.Warn("cleanup of a killed process's state dir", "state_dir", dir, "what", c.what, "error", err)
			}
		}
	}
}

// ownedStateDir checks that dir, a state dir a run dir's note names, is a
// directory of this user's: a path since taken over by someone else is not
// jobrun's to clean.
func ownedStateDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is not a directory of user %d's", dir, os.Geteuid())
	}
	return nil
}
