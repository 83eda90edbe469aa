package scheduler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
)

// TestNegativeCountsRefused: a finish report with a negative count (or a
// commit with a negative size) is refused with a 400 before anything is
// stored; it used to be stored, then panic the server in the metrics, the
// agent seeing a dropped connection.
func TestNegativeCountsRefused(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		base := serve(t, open(), nil)
		ctx := context.Background()
		ag, at := leased(t, base)
		for _, res := range []api.Result{
			{Status: api.Succeeded, CacheHits: -1},
			{Status: api.Succeeded, Caches: -3},
			{Status: api.Succeeded, Duration: api.Duration(-time.Second)},
			{Status: api.Succeeded, Usage: api.Usage{PeakMemory: -1}},
			{Status: api.Succeeded, Steps: []api.Step{{Index: -1, Name: "x", Status: api.Succeeded}}},
			{Status: api.Succeeded, CacheHits: 2, Caches: 1},
		} {
			if err := ag.Finish(ctx, at, res); !api.IsStatus(err, http.StatusBadRequest) {
				t.Fatalf("finish %+v: %v, want 400", res, err)
			}
		}
		if err := ag.Step(ctx, at, api.Step{Index: 0, Name: "b", Status: api.Succeeded, Duration: api.Duration(-1)}); !api.IsStatus(err, http.StatusBadRequest) {
			t.Fatalf("step with a negative duration: %v, want 400", err)
		}
		m := artifacts.Manifest{Files: []artifacts.ManifestFile{{Path: "a", Size: -1, SHA256: strings.Repeat("0", 64)}}}
		if err := ag.CommitArtifacts(ctx, at, m); !api.IsStatus(err, http.StatusBadRequest) {
			t.Fatalf("commit of a negative size: %v, want 400", err)
		}
		if j, err := admin(base).Job(ctx, at.Job); err != nil || j.Status != api.Running {
			t.Fatalf("after refused reports the job is %v (%v), want still running", j.Status, err)
		}
		// The positive control: sound counts are taken.
		if err := ag.Finish(ctx, at, api.Result{Status: api.Succeeded, CacheHits: 1, Caches: 2, Duration: api.Duration(time.Second)}); err != nil {
			t.Fatalf("a sound finish report: %v", err)
		}
		if j, _ := admin(base).Job(ctx, at.Job); j.Status != api.Succeeded || j.Result.CacheHits != 1 {
			t.Fatalf("job after finish: %+v", j)
		}
	})
}

// putRaw uploads body to an artifact path as the agent does, the path
// escaped by the caller; it returns the status and the reply.
func putRaw(t *testing.T, ag *api.Client, at api.Attempt, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/api/v1/jobs/%d/attempts/%d/artifacts/%s", ag.Base, at.Job, at.Attempt, path), strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+ag.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", path, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode, b.String()
}

// TestArtifactQuotas: a file over the per-file limit, files past the
// attempt's bytes or count, and bad paths are refused (413, 400) with a
// message saying which; a manifest that does not match the uploads is
// refused before it is committed. Each next to what is accepted.
func TestArtifactQuotas(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		base := serve(t, open(), func(c *Config) {
			c.Limits = Limits{ArtifactFile: 100, ArtifactBytes: 150, ArtifactFiles: 3}
		})
		ag, at := leased(t, base)
		for _, c := range []struct {
			path string
			size int
			code int
			says string
		}{
			{"big.bin", 101, 413, "big.bin of job 1 attempt 1 is 101 bytes (the server's limit is 100 B)"},
			{"a.bin", 100, 204, ""},
			{"b.bin", 60, 413, "takes the artifacts of job 1 attempt 1 to 160 bytes"},
			{"b.bin", 50, 204, ""},
			{"a.bin", 90, 204, ""}, // uploaded again: replaces, 140 in all
			{"c.bin", 0, 204, ""},
			{"d.bin", 0, 413, "more than 3 artifact files"},
			{strings.Repeat("d/", 128) + "f", 1, 400, "129 levels deep, at most 128"},
			{strings.Repeat("x", 4097), 1, 400, "artifact path of 4097 bytes: at most 4096"},
			{strings.Repeat("x", 256), 1, 400, "every part must be a name of 1 to 255 bytes"},
		} {
			code, body := putRaw(t, ag, at, c.path, strings.Repeat("z", c.size))
			if code != c.code || !strings.Contains(body, c.says) {
				t.Fatalf("PUT %.40s (%d bytes): %d %s; want %d saying %q", c.path, c.size, code, body, c.code, c.says)
			}
		}
		sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
		file := func(p string, n int) artifacts.ManifestFile {
			return artifacts.ManifestFile{Path: p, Size: int64(n), Mode: 0o644, SHA256: sum(strings.Repeat("z", n))}
		}
		ctx := context.Background()
		for _, c := range []struct {
			files []artifacts.ManifestFile
			says  string
		}{
			{[]artifacts.ManifestFile{file("a.bin", 90), file("never.bin", 1)}, `"never.bin", which was not uploaded`},
			{[]artifacts.ManifestFile{file("a.bin", 91)}, `"a.bin" has 91 bytes; 90 were uploaded`},
			{[]artifacts.ManifestFile{file("a.bin", 90), file("a.bin", 90)}, `lists "a.bin" twice`},
			{[]artifacts.ManifestFile{{Path: "a.bin", Size: 90, SHA256: "nope"}}, "want 64 hex digits"},
		} {
			err := ag.CommitArtifacts(ctx, at, artifacts.Manifest{Files: c.files})
			if !api.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("commit %v: %v; want 400 saying %q", c.files, err, c.says)
			}
		}
		// An aborted upload's files are gone, and so is their count.
		if err := ag.AbortArtifacts(ctx, at); err != nil {
			t.Fatal(err)
		}
		if err := ag.CommitArtifacts(ctx, at, artifacts.Manifest{Files: []artifacts.ManifestFile{file("a.bin", 90)}}); !api.IsStatus(err, http.StatusBadRequest) {
			t.Fatalf("commit of an aborted upload's file: %v, want 400", err)
		}
		for _, f := range []struct {
			p string
			n int
		}{{"a.bin", 90}, {"b.bin", 50}, {"c.bin", 0}} {
			if code, body := putRaw(t, ag, at, f.p, strings.Repeat("z", f.n)); code != 204 {
				t.Fatalf("PUT %s after the abort: %d %s", f.p, code, body)
			}
		}
		if err := ag.CommitArtifacts(ctx, at, artifacts.Manifest{Files: []artifacts.ManifestFile{file("a.bin", 90), file("b.bin", 50), file("c.bin", 0)}}); err != nil {
			t.Fatalf("the manifest of what was uploaded: %v", err)
		}
		body, resp := getArtifact(t, base, at, "a.bin")
		if body != strings.Repeat("z", 90) || resp.Header.Get("Content-Disposition") != "attachment; filename*=UTF-8''a.bin" ||
			resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("download: %q with headers %v", body, resp.Header)
		}
	})
}

// TestBadArtifactPathIs400: an artifact path the store refuses is the
// client's error, 400 with what is wrong, on upload and download (it was
// a 500 and an ERROR line in the server log); every API reply says
// nosniff.
func TestBadArtifactPathIs400(t *testing.T) {
	base := serve(t, sqliteStore(t), nil)
	ag, at := leased(t, base)
	if code, body := putRaw(t, ag, at, "bad%01name", "x"); code != 400 || !strings.Contains(body, "printable UTF-8") {
		t.Fatalf("PUT of a path with a control character: %d %s; want 400", code, body)
	}
	if code, body := putRaw(t, ag, at, "good-name", "x"); code != 204 {
		t.Fatalf("PUT of a sound path (the positive control): %d %s", code, body)
	}
	body, resp := getArtifact(t, base, at, "bad%01name")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "invalid file path") {
		t.Fatalf("GET of a bad artifact path: %d %s, want 400", resp.StatusCode, body)
	}
	if _, resp := getArtifact(t, base, at, "missing"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET of a missing artifact: %d, want 404", resp.StatusCode)
	}
	for _, p := range []string{"/api/v1/runs", fmt.Sprintf("/api/v1/jobs/%d/log", at.Job), "/api/v1/agents"} {
		resp, err := authGet(base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("GET %s: %d, X-Content-Type-Options %q", p, resp.StatusCode, resp.Header.Get("X-Content-Type-Options"))
		}
	}
}

func getArtifact(t *testing.T, base string, at api.Attempt, p string) (string, *http.Response) {
	t.Helper()
	resp, err := authGet(fmt.Sprintf("%s/api/v1/jobs/%d/attempts/%d/artifacts/%s", base, at.Job, at.Attempt, p))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String(), resp
}

// TestLogQuotaCountsOutput: the log quota counts the job's output, not
// the JSON lines it is stored as (several times larger): a log of exactly
// the quota's output, with the agent's truncation notice after it, is
// kept whole; output past it is refused with a 413 that says so.
func TestLogQuotaCountsOutput(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		const quota = 1 << 20
		base := serve(t, open(), func(c *Config) { c.Limits = Limits{LogOutput: quota} })
		ag, at := leased(t, base)
		var log []byte
		out := 0
		for i := 0; out < quota; i++ {
			text := fmt.Sprintf("%09d", i)[:min(9, quota-out-1)]
			log = append(log, logLines(t, api.LogLine{Kind: "out", Step: "build", Stream: "stdout", Text: text})...)
			out += len(text) + 1
		}
		log = append(log, logLines(t, api.LogLine{Kind: "notice", Text: "log truncated: the job's output passed the 1 MiB limit; later lines are not kept"})...)
		if len(log) < 4*quota {
			t.Fatalf("the test's log is only %d bytes stored", len(log))
		}
		off := appendAll(t, ag, at, 0, log)
		more := logLines(t, api.LogLine{Kind: "out", Text: strings.Repeat("m", 2<<20)})
		_, err := ag.AppendLog(context.Background(), at, off, more)
		if !api.IsStatus(err, http.StatusRequestEntityTooLarge) || !strings.Contains(err.Error(), "bytes of output (the server's limit is 1 MiB), and 1 MiB for jobrun's own lines") {
			t.Fatalf("output past the quota: %v, want 413 saying so", err)
		}
		if _, err := ag.AppendLog(context.Background(), at, off, more); !api.IsStatus(err, http.StatusRequestEntityTooLarge) {
			t.Fatalf("a second chunk past the quota: %v, want 413", err)
		}
		rc, err := admin(base).Log(context.Background(), at.Job, false)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		var text strings.Builder
		buf := make([]byte, 64<<10)
		for {
			n, err := rc.Read(buf)
			text.Write(buf[:n])
			if err != nil {
				break
			}
		}
		if !strings.Contains(text.String(), "log truncated") || strings.Contains(text.String(), "mmmm") {
			t.Fatal("the log within the quota is not whole, or the refused chunk was stored")
		}
		// The log says where and why it ends, once.
		if !strings.HasSuffix(text.String(), "later output is not kept\n") || strings.Count(text.String(), "** log cut: ") != 1 {
			t.Fatalf("the log does not end saying it was cut: %q", text.String()[max(0, text.Len()-300):])
		}
	})
}

// TestDatabaseFileIsPrivate: the SQLite database (sealed secrets, token
// hashes) is made readable by its owner only, and an existing one is made
// so.
func TestDatabaseFileIsPrivate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "jobrun.db")
	if err := os.WriteFile(filepath.Join(dir, "old.db"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{p, filepath.Join(dir, "old.db")} {
		s, err := OpenSQLite(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.db.Exec(`INSERT INTO schema_migrations (version) VALUES (999)`); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{path, path + "-wal"} {
			fi, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", filepath.Base(f), fi.Mode().Perm())
			}
		}
		s.Close()
	}
}
