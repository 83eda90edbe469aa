// Command artifacts-bench uploads a directory's files through jobrun's S3
// artifact store, the way a job's artifacts go up: Collect, then Upload
// with the manifest written last. bench/artifacts/run.sh times it against
// MinIO's own client, mc.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/jobrun/jobrun/artifacts"
)

func main() {
	var cfg artifacts.S3Config
	var dir, pattern, run string
	var workers int
	var opts artifacts.S3Options
	flag.Uint64Var(&opts.PartSize, "part-size", 0, "multipart part size in bytes (0: default)")
	flag.UintVar(&opts.PartThreads, "part-threads", 0, "parts of one file in flight (0: default)")
	var makeSmall string
	var smallN int
	flag.StringVar(&makeSmall, "make-small", "", "only create small files (1-8 KiB) in this directory")
	flag.IntVar(&smallN, "small-files", 10000, "how many files -make-small creates")
	flag.StringVar(&cfg.Endpoint, "endpoint", "", "S3 endpoint URL")
	flag.StringVar(&cfg.Bucket, "bucket", "bench", "bucket")
	flag.StringVar(&dir, "dir", "", "workspace to collect from")
	flag.StringVar(&pattern, "pattern", "**", "artifact glob")
	flag.StringVar(&run, "run", "1", "run id (one attempt per run)")
	flag.IntVar(&workers, "workers", 0, "parallel file uploads (0: default)")
	flag.Parse()
	if makeSmall != "" {
		if err := smallFiles(makeSmall, smallN); err != nil {
			fmt.Fprintln(os.Stderr, "artifacts-bench:", err)
			os.Exit(1)
		}
		return
	}
	cfg.AccessKey = os.Getenv("AWS_ACCESS_KEY_ID")
	cfg.SecretKey = os.Getenv("AWS_SECRET_ACCESS_KEY")
	if err := upload(cfg, opts, dir, pattern, run, workers); err != nil {
		fmt.Fprintln(os.Stderr, "artifacts-bench:", err)
		os.Exit(1)
	}
}

func upload(cfg artifacts.S3Config, opts artifacts.S3Options, dir, pattern, run string, workers int) error {
	ctx := context.Background()
	st, err := artifacts.NewS3(ctx, cfg, opts)
	if err != nil {
		return err
	}
	start := time.Now()
	c, err := artifacts.Collect(ctx, dir, []string{pattern}, artifacts.CollectOptions{Required: true})
	if err != nil {
		return err
	}
	ref := artifacts.Ref{Repo: "bench", Run: run, Job: "upload", Attempt: 1}
	m, err := artifacts.Upload(ctx, st, ref, c, artifacts.UploadOptions{Workers: workers})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "jobrun: %d files, %d bytes in %v\n", len(m.Files), c.Total, time.Since(start).Round(time.Millisecond))
	return nil
}

// smallFiles writes n files of random content, 1 to 8 KiB, in 100
// directories, like a build's object files.
func smallFiles(dir string, n int) error {
	rnd := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 8192)
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("pkg%02d", i%100))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		b := buf[:1024+rnd.IntN(8192-1024+1)]
		for j := range b {
			b[j] = byte(rnd.Uint32())
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d.o", i)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
