package agent

import (
	"slices"
	"strings"

	"github.com/jobrun/jobrun/agent/sandbox"
)

// caVars point the common TLS clients at a job's whole CA bundle (its
// image's plus the Runner's CACerts): OpenSSL and Go (SSL_CERT_FILE),
// Node.js (NODE_EXTRA_CA_CERTS, added to its built-in list), Python's
// requests (REQUESTS_CA_BUNDLE) and git (GIT_SSL_CAINFO). Clients that read
// the distribution's bundle paths need none: the bundle is mounted there.
var caVars = []string{"SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO"}

// withCAEnv sets caVars in env, over the image's values, to
// sandbox.CABundlePath when the Runner adds CA certificates (certs); a
// variable that the job itself sets (any of mine) is left as the job set it.
func withCAEnv(env []string, certs []byte, mine ...map[string]string) []string {
	if len(certs) == 0 {
		return env
	}
	for _, k := range caVars {
		if slices.ContainsFunc(mine, func(m map[string]string) bool { _, ok := m[k]; return ok }) {
			continue
		}
		env = slices.DeleteFunc(env, func(e string) bool { return strings.HasPrefix(e, k+"=") })
		env = append(env, k+"="+sandbox.CABundlePath)
	}
	return env
}

// caNotice says in the job's log where its CA bundle is, when it has one.
func (r *Runner) caNotice(c *sandbox.Container, l *jobLog) {
	if len(r.CACerts) == 0 {
		return
	}
	at := "no system bundle in the image"
	if t := c.CABundleTargets(); len(t) > 0 {
		at = "mounted over the image's " + strings.Join(t, ", ")
	}
	l.notice("", "CA bundle: extra certificates at "+sandbox.CABundlePath+" ("+at+")")
}

// imageCABundles are the files the image's own environment names in
// caVars: its bundles too, which the job's bundle must include.
func imageCABundles(imageEnv []string) []string {
	var out []string
	for _, kv := range imageEnv {
		k, v, _ := strings.Cut(kv, "=")
		if slices.Contains(caVars, k) && strings.HasPrefix(v, "/") && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
