package agent

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/jobrun/jobrun/agent/image"
)

// workspaceLayout makes a relative oci-layout: reference of a job run from
// a checkout absolute: PATH is taken from the job file's directory fileDir
// (relative to the checkout's root ws), and must stay inside the checkout,
// symbolic links followed, since the repository's content is the job's to
// choose and the agent's files are not. Other references are returned as
// they are.
func workspaceLayout(ref, ws, fileDir string) (string, error) {
	path, tag, ok := image.SplitLayout(ref)
	if !ok || path == "" || filepath.IsAbs(path) {
		return ref, nil
	}
	root, err := filepath.EvalSymlinks(ws)
	if err != nil {
		return "", fmt.Errorf("image %s: workspace: %w", ref, err)
	}
	dir := filepath.Join(root, fileDir, path)
	if !inside(root, dir) {
		return "", fmt.Errorf("image %s: the path leaves the checkout", ref)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("image %s: %s in the checkout: %w", ref, filepath.Join(fileDir, path), err)
	}
	if !inside(root, real) {
		return "", fmt.Errorf("image %s: the path leaves the checkout (a symbolic link to %s)", ref, real)
	}
	out := image.LayoutPrefix + real
	if tag != "" {
		out += ":" + tag
	}
	return out, nil
}

// inside reports whether path is root or below it; both are clean.
func inside(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

// jobFileDir is the directory of a lease's job file, relative to the
// checkout's root and never above it: "." for ".ci.hcl".
func jobFileDir(file string) string {
	return filepath.Join(".", filepath.Dir(filepath.Clean("/"+file)))
}

// forgetWorkspaceImage has td forget img's record when it was imported
// from inside the workspace ws: its name is a path that ends with the job,
// so the record would only pile up. Its layers stay for Prune.
func (r *Runner) forgetWorkspaceImage(img *image.Image, ws string, td *teardown) {
	if !fromWorkspace(img.Ref, ws) {
		return
	}
	ref := img.Ref
	td.add(func() error { return r.Images.Remove(ref) })
}

// fromWorkspace reports whether ref names an image imported from a layout
// inside the workspace ws.
func fromWorkspace(ref, ws string) bool {
	path, _, ok := image.SplitLayout(ref)
	if !ok {
		return false
	}
	root, err := filepath.EvalSymlinks(ws)
	return err == nil && inside(root, path)
}
