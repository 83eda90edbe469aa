package scheduler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
	"github.com/jobrun/jobrun/internal/miniotest"
)

// uploadThrough stores one artifact of a fresh lease through the server
// as the agent does, checks that another agent may not, and returns the
// attempt.
func uploadThrough(t *testing.T, base, content string) api.Attempt {
	t.Helper()
	ctx := context.Background()
	a, reg := register(t, base, "a", 1)
	other, _ := register(t, base, "other", 1)
	if _, err := admin(base).CreateRun(ctx, api.NewRun{Repo: "org/app", Branch: "main", Source: twoJobs}); err != nil {
		t.Fatal(err)
	}
	l, err := a.Lease(ctx, reg.ID, 5*time.Second)
	if err != nil || l == nil {
		t.Fatal(l, err)
	}
	if err := other.PutArtifact(ctx, l.Attempt, "dist/app.txt", strings.NewReader(content), int64(len(content))); !api.IsStatus(err, http.StatusGone) {
		t.Fatalf("upload by an agent without the lease: %v, want 410", err)
	}
	if err := a.PutArtifact(ctx, l.Attempt, "dist/app.txt", strings.NewReader(content), int64(len(content))); err != nil {
		t.Fatalf("upload by the lease holder: %v", err)
	}
	sum := sha256.Sum256([]byte(content))
	m := artifacts.Manifest{Created: time.Now(), Files: []artifacts.ManifestFile{{Path: "dist/app.txt", Size: int64(len(content)), Mode: 0o644, SHA256: hex.EncodeToString(sum[:])}}}
	if err := a.CommitArtifacts(ctx, l.Attempt, m); err != nil {
		t.Fatal(err)
	}
	if err := a.PutArtifact(ctx, l.Attempt, "late.txt", strings.NewReader("x"), 1); !api.IsStatus(err, http.StatusConflict) {
		t.Fatalf("upload after commit: %v, want 409", err)
	}
	if err := a.Finish(ctx, l.Attempt, api.Result{Status: api.Succeeded}); err != nil {
		t.Fatal(err)
	}
	return l.Attempt
}

func download(t *testing.T, base string, at api.Attempt) (string, *http.Response) {
	t.Helper()
	var m artifacts.Manifest
	rd := withRole(t, base, api.RoleRead)
	if err := rd.Manifest(context.Background(), at, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 1 || m.Repo != "org/app" || m.Attempt != at.Attempt {
		t.Fatalf("manifest = %+v", m)
	}
	// api.Client follows a redirect to a presigned URL without its token.
	rc, err := rd.OpenArtifact(context.Background(), at, "dist/app.txt")
	if err != nil {
		t.Fatalf("open through api.Client: %v", err)
	}
	rc.Close()
	req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/v1/jobs/%d/attempts/%d/artifacts/dist/app.txt", base, at.Job, at.Attempt), nil)
	req.Header.Set("Authorization", "Bearer "+rd.Token)
	// As api.Client does: the token goes to the server only, not to the
	// presigned URL it may redirect to.
	hc := &http.Client{CheckRedirect: func(r *http.Request, via []*http.Request) error {
		if r.URL.Host != via[0].URL.Host {
			r.Header.Del("Authorization")
		}
		return nil
	}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("download: %d %s", resp.StatusCode, body)
	}
	return string(body), resp
}

func TestArtifactsThroughServer(t *testing.T) {
	base := serve(t, sqliteStore(t), nil)
	at := uploadThrough(t, base, "built by the agent\n")
	body, resp := download(t, base, at)
	if body != "built by the agent\n" || resp.Request.URL.Host != strings.TrimPrefix(base, "http://") {
		t.Fatalf("download from %s = %q", resp.Request.URL, body)
	}
}

func TestArtifactsPresignedFromS3(t *testing.T) {
	cfg := miniotest.Config(t)
	store, err := artifacts.NewS3(context.Background(), cfg, artifacts.S3Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, sqliteStore(t), func(c *Config) { c.Artifacts = store })
	at := uploadThrough(t, base, "stored in S3\n")
	body, resp := download(t, base, at)
	// The bytes came from MinIO through a presigned URL, not via the server.
	if body != "stored in S3\n" || !strings.Contains(cfg.Endpoint, resp.Request.URL.Host) || resp.Request.URL.Query().Get("X-Amz-Signature") == "" {
		t.Fatalf("download from %s = %q; want a presigned MinIO URL", resp.Request.URL, body)
	}
}
