// Package redact keeps credentials written into URLs
// (https://user:TOKEN@host/x.git) out of what jobrun shows: logs, errors,
// a job's reason, replies. It is the one place that knows how.
package redact

import (
	"net/url"
	"regexp"
)

// URL returns rawURL without its userinfo (user name and password: a
// forge token is often the user name). A string that does not parse as a
// URL has any URL in it redacted as Text does.
func URL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return Text(rawURL)
	}
	u.User = nil
	return u.String()
}

// userinfo is the user name and password after a URL's scheme: anything
// but the characters that end the authority, up to the last @ before them.
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s"'<>]*@`)

// Text returns s with the userinfo of every URL in it removed, for text
// that may quote a URL (another program's error message, say).
func Text(s string) string {
	return userinfo.ReplaceAllString(s, "$1")
}

// Error returns err with Text applied to its message; errors.Is and
// errors.As still see the errors it wraps. It returns nil for nil.
func Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if red := Text(msg); red != msg {
		return &redacted{msg: red, err: err}
	}
	return err
}

type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }
