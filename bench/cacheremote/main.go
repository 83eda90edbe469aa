// Command cacheremote-bench saves a directory as a cache volume to an S3
// bucket, or restores it on a fresh host, through package cache's Remote,
// the way agents of a pool share caches. It prints the seconds the save
// (Release of a trusted job) or the restore (Acquire of a missing
// volume) took. bench/cacheremote/run.sh times it against mc mirror.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jobrun/jobrun/cache"
	"github.com/jobrun/jobrun/internal/s3client"
)

func main() {
	var cfg s3client.Config
	var state, src, key, mode, makeBig, makeSmall string
	flag.StringVar(&cfg.Endpoint, "endpoint", "", "S3 endpoint URL")
	flag.StringVar(&cfg.Bucket, "bucket", "bench", "bucket")
	flag.StringVar(&cfg.Prefix, "prefix", "caches", "object prefix")
	flag.StringVar(&state, "state", "", "the host's cache directory (fresh for a restore)")
	flag.StringVar(&src, "src", "", "save: the directory to save as the volume's content")
	flag.StringVar(&key, "key", "1", "the cache key")
	flag.StringVar(&mode, "mode", "", "save or restore")
	flag.StringVar(&makeBig, "make-big", "", "only create -big-mib MiB of random data in ten files in this directory")
	flag.StringVar(&makeSmall, "make-small", "", "only create -small-files files of 1-5 KiB in this directory")
	bigMiB := flag.Int("big-mib", 1024, "-make-big: MiB in all (at least 10)")
	nSmall := flag.Int("small-files", 100000, "-make-small: how many files")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the save or restore to this file")
	verbose := flag.Bool("v", false, "log the cache's restores and uploads to stderr")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "cacheremote-bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	var log hclog.Logger
	if *verbose {
		log = hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Debug})
	}
	cfg.AccessKey = os.Getenv("AWS_ACCESS_KEY_ID")
	cfg.SecretKey = os.Getenv("AWS_SECRET_ACCESS_KEY")
	var err error
	switch {
	case makeBig != "":
		err = bigFiles(makeBig, *bigMiB)
	case makeSmall != "":
		err = smallFiles(makeSmall, *nSmall)
	case mode == "save":
		err = save(cfg, log, state, src, key)
	case mode == "restore":
		err = restore(cfg, log, state, key)
	default:
		err = fmt.Errorf("want -mode save or restore, or -make-big/-make-small")
	}
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "cacheremote-bench:", err)
		os.Exit(1)
	}
}

func req(key string, upload bool) cache.Request {
	return cache.Request{Repo: "example.com/bench", Name: "deps", Key: key, Upload: upload}
}

// save fills a new volume with src's files (hard links: not timed) and
// times its Release by a successful trusted job: measure and upload.
func save(cfg s3client.Config, log hclog.Logger, state, src, key string) error {
	ctx := context.Background()
	m, err := cache.Open(state, cache.Options{Remote: &cfg, Logger: log})
	if err != nil {
		return err
	}
	v, err := m.Acquire(ctx, req(key, true))
	if err != nil {
		return err
	}
	if out, err := exec.Command("cp", "-al", src+"/.", v.Path()).CombinedOutput(); err != nil {
		return fmt.Errorf("cp -al: %v: %s", err, out)
	}
	start := time.Now()
	if err := v.Release(ctx, true); err != nil {
		return err
	}
	fmt.Printf("%.3f\n", time.Since(start).Seconds())
	return nil
}

// restore times the Acquire of a volume missing on this host: the newest
// archive streamed from the bucket into place.
func restore(cfg s3client.Config, log hclog.Logger, state, key string) error {
	ctx := context.Background()
	m, err := cache.Open(state, cache.Options{Remote: &cfg, ReadOnly: true, Logger: log})
	if err != nil {
		return err
	}
	start := time.Now()
	v, err := m.Acquire(ctx, req(key, false))
	if err != nil {
		return err
	}
	took := time.Since(start)
	if _, ok := v.Restored(); !ok {
		return fmt.Errorf("key %s: not restored from the remote", key)
	}
	fmt.Printf("%.3f\n", took.Seconds())
	return v.Release(ctx, false)
}

// bigFiles writes ten files of random data, mib MiB in all, into dir.
func bigFiles(dir string, mib int) error {
	if mib < 10 {
		return fmt.Errorf("-big-mib %d: want at least 10", mib)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := range 10 {
		f, err := os.Open("/dev/urandom")
		if err != nil {
			return err
		}
		out, err := os.Create(filepath.Join(dir, fmt.Sprintf("blob%02d.bin", i)))
		if err != nil {
			f.Close()
			return err
		}
		buf := make([]byte, 1<<20)
		for range mib / 10 {
			if _, err := f.Read(buf); err != nil {
				return err
			}
			if _, err := out.Write(buf); err != nil {
				return err
			}
		}
		f.Close()
		if err := out.Close(); err != nil {
			return err
		}
	}
	return nil
}

func smallFiles(dir string, n int) error {
	buf := make([]byte, 5<<10)
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("d%03d", i/1000))
		if i%1000 == 0 {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		size := 1<<10 + rand.IntN(4<<10)
		for j := range buf[:size] {
			buf[j] = byte(rand.Uint32())
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d", i)), buf[:size], 0o644); err != nil {
			return err
		}
	}
	return nil
}
