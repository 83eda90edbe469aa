// Command trigger-bench measures issue 8's path end to end with the real
// jobrun binary: a push to a real git repository, its signed GitHub
// webhook posted to `jobrun server`, and the job's first step running on
// an idle `jobrun agent` with the image warm. Each push goes to a branch of
// its own, so neither supersede nor affinity waits are in the figure. The
// baseline is the same job posted to the runs API with no repository to
// check out: the difference is what webhooks, mirrors and checkout cost.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/bench/internal/result"
	"github.com/jobrun/jobrun/scheduler/webhook"
)

const (
	adminToken = "bench-admin"
	regToken   = "bench-registration"
	secret     = "bench-secret"
)

func main() {
	bin := flag.String("jobrun", "jobrun", "the jobrun binary")
	image := flag.String("image", "", "the job's image reference (warm after the first run)")
	pushes := flag.Int("pushes", 100, "pushes, each to a branch of its own")
	baseline := flag.Int("baseline", 30, "runs posted to the runs API without a repository")
	out := flag.String("json", "", "write the figures to this file (package bench/internal/result)")
	flag.Parse()
	if err := bench(*bin, *image, *pushes, *baseline, *out); err != nil {
		fmt.Fprintln(os.Stderr, "trigger-bench:", err)
		os.Exit(1)
	}
}

type proc struct {
	cmd *exec.Cmd
	log *bytes.Buffer
}

// start runs jobrun with args until its stderr matches want.
func start(bin string, want *regexp.Regexp, args ...string) (*proc, string, error) {
	cmd := exec.Command(bin, args...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	p := &proc{cmd: cmd, log: &bytes.Buffer{}}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			if m := want.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case v := <-found:
		return p, v, nil
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		cmd.Wait()
		return nil, "", fmt.Errorf("jobrun %s did not start", strings.Join(args, " "))
	}
}

func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		p.cmd.Process.Kill()
		<-done
	}
}

func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=b", "GIT_AUTHOR_EMAIL=b@b", "GIT_COMMITTER_NAME=b", "GIT_COMMITTER_EMAIL=b@b")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

func bench(bin, image string, pushes, baseline int, out string) error {
	res := result.New("trigger", "Webhook received -> first step running on an idle agent with a warm image (real jobrun server and agent, a git push per branch), against the same job posted to the runs API without a checkout")
	res.Param("pushes", pushes)
	res.Param("baseline", baseline)
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "jobrun-bench-trigger-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The repository: a job file and a few small files, pushed to a bare
	// repository that stands for the forge's.
	work, bare := filepath.Join(dir, "work"), filepath.Join(dir, "hello.git")
	ci := fmt.Sprintf("job \"show\" {\n  image   = %q\n  network = \"none\"\n  step \"show\" { run = \"cat README\" }\n}\n", image)
	files := map[string]string{".ci.hcl": ci, "README": "hello\n", "src/main.go": "package main\n\nfunc main() {}\n"}
	if err := os.MkdirAll(filepath.Join(work, "src"), 0o755); err != nil {
		return err
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(work, n), []byte(b), 0o644); err != nil {
			return err
		}
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"commit", "-qm", "first"},
		{"init", "-q", "--bare", bare}, {"remote", "add", "origin", bare}, {"push", "-q", "origin", "main"}} {
		if _, err := git(work, args...); err != nil {
			return err
		}
	}

	srv, addr, err := start(bin, regexp.MustCompile(`server listening on (\S+)`), "--state-dir", filepath.Join(dir, "server"), "server",
		"--listen", "127.0.0.1:0", "--admin-token", adminToken, "--registration-token", regToken, "--affinity-wait", "0s")
	if err != nil {
		return err
	}
	defer srv.stop()
	base := "http://" + addr
	agent, _, err := start(bin, regexp.MustCompile(`agent: (registered)`), "--state-dir", filepath.Join(dir, "agent"), "--log-level", "info",
		"agent", "--server", base, "--token", regToken, "--name", "bench")
	if err != nil {
		return err
	}
	defer agent.stop()
	c := &api.Client{Base: base, Token: adminToken}
	if _, err := c.AddRepo(ctx, api.NewRepo{Name: "hello", CloneURL: bare, Secret: secret, Forge: "github"}); err != nil {
		return err
	}

	// Warm-up: the image is imported and unpacked once, the mirrors made.
	if _, _, err := push(ctx, c, base, work, "warm-up"); err != nil {
		return err
	}
	var hook, lease, step []time.Duration
	for i := 0; i < pushes; i++ {
		h, j, err := push(ctx, c, base, work, fmt.Sprintf("branch-%03d", i))
		if err != nil {
			return err
		}
		hook = append(hook, h)
		lease = append(lease, j.leased)
		step = append(step, j.step)
	}
	var apiStep []time.Duration
	for i := 0; i < baseline; i++ {
		t0 := time.Now()
		run, err := c.CreateRun(ctx, api.NewRun{Repo: "plain", Branch: fmt.Sprintf("api-%03d", i),
			Source: strings.Replace(ci, "cat README", "echo hello", 1)})
		if err != nil {
			return err
		}
		j, err := waitFirstStep(ctx, c, run.ID, t0)
		if err != nil {
			return err
		}
		apiStep = append(apiStep, j.step)
	}
	fmt.Printf("%d pushes to %d branches (webhook -> first step running on an idle agent, image warm, small repository):\n", pushes, pushes)
	fmt.Printf("  webhook answered   p50 %6.1f ms  p99 %6.1f ms  (mirror fetch, .ci.hcl read, run queued)\n", p(hook, 50), p(hook, 99))
	fmt.Printf("  job leased         p50 %6.1f ms  p99 %6.1f ms\n", p(lease, 50), p(lease, 99))
	fmt.Printf("  first step running p50 %6.1f ms  p99 %6.1f ms  (target p50 < 300 ms)\n", p(step, 50), p(step, 99))
	fmt.Printf("baseline, %d runs posted to the runs API, no checkout:\n", baseline)
	fmt.Printf("  first step running p50 %6.1f ms  p99 %6.1f ms\n", p(apiStep, 50), p(apiStep, 99))
	fmt.Printf("ratio webhook/API (p50): %.2f\n", p(step, 50)/p(apiStep, 50))
	if out == "" {
		return nil
	}
	const first = "to first step running"
	m := res.Durations(first, "jobrun webhook", step)
	m.Chart = "quantiles"
	m.Target = &result.Target{Of: "p50", Op: "<", Value: 300}
	res.Durations(first, "jobrun runs API", apiStep)
	res.Compare(first, "jobrun runs API")
	res.Durations("webhook answered", "jobrun webhook", hook).Chart = "quantiles"
	res.Durations("job leased", "jobrun webhook", lease).Chart = "quantiles"
	return res.Write(out)
}

type timing struct{ leased, step time.Duration }

// push commits on a new branch, pushes it, posts the signed webhook and
// waits for the run's job to finish.
func push(ctx context.Context, c *api.Client, base, work, branch string) (time.Duration, timing, error) {
	if _, err := git(work, "checkout", "-q", "-B", branch, "main"); err != nil {
		return 0, timing{}, err
	}
	if err := os.WriteFile(filepath.Join(work, "README"), []byte("hello from "+branch+"\n"), 0o644); err != nil {
		return 0, timing{}, err
	}
	if _, err := git(work, "commit", "-qam", branch); err != nil {
		return 0, timing{}, err
	}
	head, err := git(work, "rev-parse", "HEAD")
	if err != nil {
		return 0, timing{}, err
	}
	if _, err := git(work, "push", "-q", "origin", branch); err != nil {
		return 0, timing{}, err
	}
	body := fmt.Sprintf(`{"ref":"refs/heads/%s","before":"%s","after":"%s","created":true,"deleted":false,"forced":false,`+
		`"repository":{"full_name":"bench/hello","clone_url":"https://example.com/bench/hello.git","default_branch":"main"},`+
		`"pusher":{"name":"bench","email":"bench@example.com"}}`, branch, strings.Repeat("0", 40), head)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/hooks/github/hello", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "bench-"+branch)
	req.Header.Set("X-Hub-Signature-256", "sha256="+webhook.Sign([]byte(body), []byte(secret)))
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, timing{}, err
	}
	resp.Body.Close()
	hook := time.Since(t0)
	if resp.StatusCode != http.StatusCreated {
		return 0, timing{}, fmt.Errorf("webhook for %s: %s", branch, resp.Status)
	}
	runs, err := c.Runs(ctx, "hello", branch)
	if err != nil || len(runs) != 1 {
		return 0, timing{}, fmt.Errorf("runs of %s: %v %v", branch, runs, err)
	}
	j, err := waitFirstStep(ctx, c, runs[0].ID, t0)
	return hook, j, err
}

// waitFirstStep waits for the run's one job to succeed and returns when,
// from t0, it was leased and its first step started (the agent's report,
// on this machine's clock).
func waitFirstStep(ctx context.Context, c *api.Client, run int64, t0 time.Time) (timing, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		r, err := c.Run(ctx, run)
		if err != nil {
			return timing{}, err
		}
		if api.Final(r.Status) {
			if r.Status != api.Succeeded || len(r.Jobs) != 1 {
				return timing{}, fmt.Errorf("run %d: %s %s", run, r.Status, r.Reason)
			}
			j, err := c.Job(ctx, r.Jobs[0].ID)
			if err != nil {
				return timing{}, err
			}
			if len(j.Steps) == 0 || j.Started == nil {
				return timing{}, fmt.Errorf("job %d has no step times", j.ID)
			}
			return timing{leased: j.Started.Sub(t0), step: j.Steps[0].Started.Sub(t0)}, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return timing{}, fmt.Errorf("run %d did not finish in 2 minutes", run)
}

func p(d []time.Duration, q int) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*q + 99) / 100
	if i > 0 {
		i--
	}
	return float64(s[i]) / float64(time.Millisecond)
}
