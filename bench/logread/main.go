// Command logread-bench measures a real `jobrun server`'s memory while
// clients read one large log: it uploads the log as an agent does (1 MiB
// chunks of JSON lines), finishes the job, then has every client read the
// job page, the text download and the live-log stream from the start at
// once, sampling the server's resident set (VmRSS, from /proc) all along.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/units"
)

const (
	regToken   = "bench-registration"
	adminToken = "bench-admin"
)

func main() {
	bin := flag.String("jobrun", "jobrun", "the jobrun binary to run the server of")
	size := flag.String("log", "64MiB", "size of the stored log (JSON lines)")
	clients := flag.Int("clients", 8, "clients reading at once")
	flag.Parse()
	n, err := units.ParseSize(*size)
	if err == nil {
		err = bench(*bin, n, *clients)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "logread-bench:", err)
		os.Exit(1)
	}
}

func bench(bin string, size int64, clients int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "jobrun-bench-logread-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv, base, err := startServer(ctx, bin, dir)
	if err != nil {
		return err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	pid := srv.Process.Pid

	at, out, err := upload(ctx, base, size)
	if err != nil {
		return err
	}
	idle, _ := rss(pid)
	fmt.Printf("log: %s stored (%s of output) in job %d; server RSS after the upload %s\n",
		units.FormatSize(size), units.FormatSize(out), at.Job, units.FormatSize(idle))

	reads := []struct{ name, path string }{
		{"job page", fmt.Sprintf("/jobs/%d", at.Job)},
		{"text download", fmt.Sprintf("/api/v1/jobs/%d/log", at.Job)},
		{"live log from the start", fmt.Sprintf("/jobs/%d/events?attempt=%d&from=0&line=1", at.Job, at.Attempt)},
	}
	for _, rd := range reads {
		peak, got, err := measure(ctx, pid, clients, base+rd.path)
		if err != nil {
			return fmt.Errorf("%s: %w", rd.name, err)
		}
		fmt.Printf("%-24s %d clients: peak server RSS %s (each client got %s)\n", rd.name, clients, units.FormatSize(peak), units.FormatSize(got))
	}
	hwm, _ := procField(pid, "VmHWM:")
	fmt.Printf("server VmHWM over the whole run: %s\n", units.FormatSize(hwm))
	return nil
}

// measure has n clients GET url at once and returns the highest RSS of
// pid seen meanwhile and the bytes one client read.
func measure(ctx context.Context, pid, n int, url string) (int64, int64, error) {
	done := make(chan struct{})
	peak := make(chan int64, 1)
	go func() {
		var max int64
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if v, err := rss(pid); err == nil && v > max {
				max = v
			}
			select {
			case <-done:
				peak <- max
				return
			case <-tick.C:
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	var got int64
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
			req.Header.Set("Authorization", "Bearer "+adminToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			m, err := io.Copy(io.Discard, resp.Body)
			if err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("%s", resp.Status)
			}
			if err != nil {
				errs <- err
				return
			}
			got = m
		}()
	}
	wg.Wait()
	close(done)
	close(errs)
	return <-peak, got, <-errs
}

// upload makes a one-job run, leases it and stores size bytes of log in
// the agent's chunks, then finishes it. It returns the attempt and the
// bytes of output the log holds.
func upload(ctx context.Context, base string, size int64) (api.Attempt, int64, error) {
	c := &api.Client{Base: base}
	reg, err := c.Register(ctx, regToken, api.RegisterRequest{Name: "bench", Slots: 1})
	if err != nil {
		return api.Attempt{}, 0, err
	}
	c.Token = reg.Token
	ad := &api.Client{Base: base, Token: adminToken}
	src := "job \"big\" {\n  image = \"busybox\"\n  step \"print\" { run = \"yes\" }\n}\n"
	if _, err := ad.CreateRun(ctx, api.NewRun{Repo: "bench", Branch: "main", Source: src}); err != nil {
		return api.Attempt{}, 0, err
	}
	l, err := c.Lease(ctx, reg.ID, 10*time.Second)
	if err != nil || l == nil {
		return api.Attempt{}, 0, fmt.Errorf("lease: %v", err)
	}
	text := strings.Repeat("y", 100)
	var chunk []byte
	var off, out int64
	t0 := time.Now()
	for i := 0; off+int64(len(chunk)) < size; i++ {
		line, _ := json.Marshal(api.LogLine{Time: t0.Add(time.Duration(i) * time.Microsecond), Kind: "out", Step: "print", Stream: "stdout", Text: fmt.Sprintf("%08d %s", i, text)})
		chunk = append(append(chunk, line...), '\n')
		out += int64(len(text) + 9)
		if len(chunk) >= 1<<20 {
			if _, err := c.AppendLog(ctx, l.Attempt, off, chunk); err != nil {
				return api.Attempt{}, 0, err
			}
			off += int64(len(chunk))
			chunk = chunk[:0]
		}
	}
	if _, err := c.AppendLog(ctx, l.Attempt, off, chunk); err != nil {
		return api.Attempt{}, 0, err
	}
	return l.Attempt, out, c.Finish(ctx, l.Attempt, api.Result{Status: api.Succeeded})
}

// startServer runs `jobrun server` on SQLite in dir and returns its URL.
func startServer(ctx context.Context, bin, dir string) (*exec.Cmd, string, error) {
	cmd := exec.CommandContext(ctx, bin, "--state-dir", filepath.Join(dir, "state"), "server", "--listen", "127.0.0.1:0",
		"--admin-token", adminToken, "--registration-token", regToken)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	re := regexp.MustCompile(`server listening on (\S+)`)
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			go io.Copy(io.Discard, pipe)
			return cmd, "http://" + m[1], nil
		}
	}
	cmd.Wait()
	return nil, "", fmt.Errorf("%s server did not start", bin)
}

func rss(pid int) (int64, error) { return procField(pid, "VmRSS:") }

// procField reads a "NAME: N kB" field of /proc/PID/status in bytes.
func procField(pid int, name string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == name {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, name)
}
