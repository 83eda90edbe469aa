package agent

import (
	"context"
	"fmt"
	"strings"

	"github.com/jobrun/jobrun/agent/image"
)

// resolveImage finds the image ref (the job's or a service's) names, for
// job j whose workspace is ws: a relative oci-layout: path of a checked-out
// job is taken from the checkout (see workspaceLayout), the job's pull
// policy wins over the Runner's, and the job's registry login is offered
// beside the agent's. With user namespaces, an image with files owned by
// ids they cannot map is refused here, before anything starts.
func (r *Runner) resolveImage(ctx context.Context, j *Job, ref, ws string) (*image.Image, error) {
	if j.FileDir != "" {
		var err error
		if ref, err = workspaceLayout(ref, ws, j.FileDir); err != nil {
			return nil, err
		}
	}
	p := image.Policy(j.Pull)
	if p == "" {
		p = r.PullPolicy
	}
	var creds []image.Credential
	if c, ok := j.imageCredential(ref); ok {
		creds = append(creds, c)
	}
	img, err := r.Images.ResolvePolicy(ctx, ref, j.BaseDir, p, creds...)
	if err != nil {
		return nil, err
	}
	if err := r.checkImageIDs(img); err != nil {
		if fromWorkspace(img.Ref, ws) {
			// As forgetWorkspaceImage would at teardown.
			r.Images.Remove(img.Ref)
		}
		return nil, err
	}
	return img, nil
}

// imageCredential is the job's registry login (its image_credentials
// secret, USER:PASSWORD) for ref's registry, if ref is on the registry of
// the job's image.
func (j *Job) imageCredential(ref string) (image.Credential, bool) {
	if j.ImageLogin == "" {
		return image.Credential{}, false
	}
	own, err := image.ParseRef(j.Image)
	if err != nil {
		return image.Credential{}, false
	}
	r, err := image.ParseRef(ref)
	if err != nil || r.Context().RegistryStr() != own.Context().RegistryStr() {
		return image.Credential{}, false
	}
	user, pw, _ := strings.Cut(j.ImageLogin, ":")
	return image.Credential{Registry: own.Context().RegistryStr(), Username: user, Password: pw}, true
}

// checkImageLogin refuses a login that is not USER:PASSWORD, without
// showing it.
func checkImageLogin(job, secret, v string) error {
	if user, pw, ok := strings.Cut(v, ":"); !ok || user == "" || pw == "" {
		return fmt.Errorf("job %q: secret %s (image_credentials) is not USER:PASSWORD", job, secret)
	}
	return nil
}
