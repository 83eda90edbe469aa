// Command logread-bench measures a real `jobrun server`'s memory while
// clients read one large log: it uploads the log as an agent does (1 MiB
// chunks of JSON lines), finishes the job, then has every client read the
// job page, the text download and the live-log stream from the start at
// once, sampling the server's resident set (VmRSS, from /proc) all along.
// With -json it writes the figures (package bench/internal/result): the
// peak RSS of each read mode, one sample per round, with the target of
// staying under 100 MiB and the log's size as the peer to weigh it by.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/bench/internal/result"
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
	rounds := flag.Int("rounds", 3, "rounds of every read mode, alternating")
	out := flag.String("json", "", "write the figures to this file (package bench/internal/result)")
	flag.Parse()
	n, err := units.ParseSize(*size)
	if err == nil && (*clients < 1 || *rounds < 1) {
		err = fmt.Errorf("-clients %d, -rounds %d: want at least 1 each", *clients, *rounds)
	}
	if err == nil {
		res := result.New("logread", fmt.Sprintf("A real `jobrun server`'s peak memory (VmRSS, sampled every 10 ms) while %d clients read one %s log at once, by read mode; the log's size is the peer, the target under 100 MiB", *clients, units.FormatSize(n)))
		res.Param("log", units.FormatSize(n))
		res.Param("clients", *clients)
		res.Param("rounds", *rounds)
		err = bench(res, *bin, n, *clients, *rounds)
		if err == nil && *out != "" {
			err = res.Write(*out)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "logread-bench:", err)
		os.Exit(1)
	}
}

// metric is the figure every read mode's peak is a tool of.
const metric = "peak server RSS"

// mib is bytes in MiB, the figures' unit.
func mib(n int64) float64 { return float64(n) / (1 << 20) }

// bench stores the log, then measures each read mode rounds times,
// alternating, and adds the peaks to res.
func bench(res *result.File, bin string, size int64, clients, rounds int) error {
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
	idle, err := rss(pid)
	if err != nil {
		return err
	}
	fmt.Printf("log: %s stored (%s of output) in job %d; server RSS after the upload %s\n",
		units.FormatSize(size), units.FormatSize(out), at.Job, units.FormatSize(idle))

	reads := []struct{ name, path string }{
		{"job page", fmt.Sprintf("/jobs/%d", at.Job)},
		{"text download", fmt.Sprintf("/api/v1/jobs/%d/log", at.Job)},
		{"live log from the start", fmt.Sprintf("/jobs/%d/events?attempt=%d&from=0&line=1", at.Job, at.Attempt)},
	}
	cookie, err := signIn(ctx, base)
	if err != nil {
		return err
	}
	peaks := make([][]float64, len(reads))
	for r := range rounds {
		for i, rd := range reads {
			peak, got, err := measure(ctx, pid, clients, base+rd.path, cookie)
			if err != nil {
				return fmt.Errorf("%s: %w", rd.name, err)
			}
			peaks[i] = append(peaks[i], mib(peak))
			fmt.Printf("round %d %-24s %d clients: peak server RSS %s (each client got %s)\n", r+1, rd.name, clients, units.FormatSize(peak), units.FormatSize(got))
		}
	}
	hwm, err := procField(pid, "VmHWM:")
	if err != nil {
		return err
	}
	fmt.Printf("server VmHWM over the whole run: %s\n", units.FormatSize(hwm))
	for i, rd := range reads {
		// p100, the highest peak of all rounds, is what must stay under.
		res.Add(result.Metric{Metric: metric, Tool: rd.name, Unit: "MiB", Samples: peaks[i], Chart: "bars",
			Target: &result.Target{Of: "p100", Op: "<", Value: 100}})
	}
	res.Add(result.Metric{Metric: metric, Tool: "whole run (VmHWM)", Unit: "MiB", Samples: []float64{mib(hwm)},
		Target: &result.Target{Of: "p100", Op: "<", Value: 100}})
	res.Add(result.Metric{Metric: metric, Tool: "after the upload, idle", Unit: "MiB", Samples: []float64{mib(idle)}})
	res.Add(result.Metric{Metric: metric, Tool: "log size", Unit: "MiB", Samples: []float64{mib(size)}})
	res.Compare(metric, "log size")
	return nil
}

// noRedirect is a client that answers a redirect (to the sign-in page)
// as it is, so a read the server refused fails instead of measuring the
// sign-in page.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// signIn signs in to the web UI with the admin token, as a browser does,
// and returns the session's cookie: the pages and the live log take no
// bearer token.
func signIn(ctx context.Context, base string) (*http.Cookie, error) {
	form := url.Values{"token": {adminToken}, "next": {"/"}}
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/login", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := noRedirect.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sign in: %w", err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "jobrun_session" && c.Value != "" {
			return c, nil
		}
	}
	return nil, fmt.Errorf("sign in: %s and no session cookie", resp.Status)
}

// measure has n clients GET addr at once (with the bearer token and the
// session's cookie) and returns the highest RSS of pid seen meanwhile and
// the bytes one client read.
func measure(ctx context.Context, pid, n int, addr string, cookie *http.Cookie) (int64, int64, error) {
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
			req, _ := http.NewRequestWithContext(ctx, "GET", addr, nil)
			req.Header.Set("Authorization", "Bearer "+adminToken)
			req.AddCookie(cookie)
			resp, err := noRedirect.Do(req)
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
