package git

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/gittest"
)

// TestExportSubmodules exports a commit whose tree has a submodule at a
// relative URL on the same HTTPS server (which wants the token), and one
// nested in it.
func TestExportSubmodules(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	bare := func(w *gittest.Repo, name string) {
		dir := filepath.Join(root, name)
		w.Git("init", "-q", "--bare", "-b", "main", dir)
		w.Git("push", "-q", dir, "main")
	}
	inner := gittest.New(t)
	innerHead := inner.Commit("inner", map[string]string{"deep.txt": "deep\n"})
	bare(inner, "inner.git")

	lib := gittest.New(t)
	lib.Commit("lib", map[string]string{"lib.txt": "library\n", ".gitmodules": "[submodule \"inner\"]\n\tpath = vendor/inner\n\turl = ../inner.git\n"})
	lib.Git("update-index", "--add", "--cacheinfo", "160000,"+innerHead+",vendor/inner")
	lib.Git("commit", "-qm", "add inner")
	libHead := lib.Git("rev-parse", "HEAD")
	bare(lib, "lib.git")
	// A later commit of lib that the parent does not record.
	lib.Commit("later", map[string]string{"lib.txt": "later\n"})
	lib.Git("push", "-q", filepath.Join(root, "lib.git"), "main")

	app := gittest.New(t)
	app.Commit("app", map[string]string{"main.txt": "app\n", ".gitmodules": "[submodule \"lib\"]\n\tpath = third_party/lib\n\turl = ../lib.git\n"})
	app.Git("update-index", "--add", "--cacheinfo", "160000,"+libHead+",third_party/lib")
	app.Git("commit", "-qm", "add lib")
	bare(app, "app.git")

	base := gittest.Serve(t, root, "tok")
	appURL := base + "/app.git"
	mirrors := t.TempDir()
	m := MirrorPath(mirrors, appURL)
	if err := Mirror(ctx, m, appURL, MirrorOptions{Auth: Auth{Token: "tok"}}); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if _, err := Export(ctx, m, "refs/heads/main", dst); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dst, "third_party", "lib")); len(ents) != 0 {
		t.Fatalf("Export alone filled the submodule: %v", ents)
	}
	o := SubmoduleOptions{MirrorDir: mirrors, ParentURL: appURL, Auth: Auth{Token: "tok"}}
	if err := ExportSubmodules(ctx, m, "refs/heads/main", dst, o); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"main.txt": "app\n", "third_party/lib/lib.txt": "library\n", "third_party/lib/vendor/inner/deep.txt": "deep\n"} {
		if b, err := os.ReadFile(filepath.Join(dst, p)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
	// The control: with fresh mirrors and no token the server refuses
	// the submodule's fetch, so the token above did reach it.
	o.Auth, o.MirrorDir = Auth{}, t.TempDir()
	dst2 := t.TempDir()
	if _, err := Export(ctx, m, "refs/heads/main", dst2); err != nil {
		t.Fatal(err)
	}
	if err := ExportSubmodules(ctx, m, "refs/heads/main", dst2, o); err == nil || !strings.Contains(err.Error(), `submodule "lib"`) {
		t.Fatalf("submodules without the token: %v, want the fetch refused", err)
	}
}

func TestSubmoduleURLs(t *testing.T) {
	for _, c := range []struct{ parent, sub, want, err string }{
		{"https://forge.example/org/app.git", "../lib.git", "https://forge.example/org/lib.git", ""},
		{"https://forge.example/org/app.git", "./lib", "https://forge.example/org/app.git/lib", ""},
		{"https://forge.example/org/app.git", "git@forge.example:org/lib.git", "git@forge.example:org/lib.git", ""},
		{"https://forge.example/org/app.git", "/var/lib/jobrun/work/mirrors/secret.git", "", "only http(s) and ssh"},
		{"https://forge.example/org/app.git", "file:///etc", "", "only http(s) and ssh"},
		{"/srv/app.git", "../lib.git", "", "needs an http(s) or ssh:// parent URL"},
	} {
		got, err := resolveURL(c.parent, c.sub)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("resolveURL(%q, %q) = %q, %v; want error %q", c.parent, c.sub, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("resolveURL(%q, %q) = %q, %v; want %q", c.parent, c.sub, got, err, c.want)
		}
	}
	if !sameHost("https://a.example/x.git", "https://a.example/y.git") || sameHost("https://a.example/x.git", "https://b.example/x.git") {
		t.Error("sameHost")
	}
}
