package redact

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:TOKEN@host/x.git":           "https://host/x.git",
		"https://TOKEN@host/x.git":                "https://host/x.git",
		"https://x-access-token:T@h:8443/a/b.git": "https://h:8443/a/b.git",
		"postgres://u:p@db:5432/jobrun?sslmode=x": "postgres://db:5432/jobrun?sslmode=x",
		"https://host/x.git":                      "https://host/x.git",
		"git@github.com:o/r.git":                  "git@github.com:o/r.git",
		"/srv/git/r.git":                          "/srv/git/r.git",
		"http://u:p%zz@host/x":                    "http://host/x", // not a URL to url.Parse
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestText(t *testing.T) {
	for in, want := range map[string]string{
		`clone https://user:TOKEN@host/x.git: auth failed`:         `clone https://host/x.git: auth failed`,
		`Get "http://TOKEN@h/x/info/refs?service=git-upload-pack"`: `Get "http://h/x/info/refs?service=git-upload-pack"`,
		`two: ssh://git:pw@a/x and https://b:c@d/e`:                `two: ssh://a/x and https://d/e`,
		`a password with @: https://u:p@ss@host/x`:                 `a password with @: https://host/x`,
		`mail user@example.com, see https://host/a@b`:              `mail user@example.com, see https://host/a@b`,
		`nothing here`: `nothing here`,
	} {
		if got := Text(in); got != want {
			t.Errorf("Text(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestError(t *testing.T) {
	err := Error(fmt.Errorf("fetch https://u:TOKEN@h/x.git: %w", fs.ErrNotExist))
	if err.Error() != "fetch https://h/x.git: file does not exist" || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Error = %q (is ErrNotExist: %v)", err, errors.Is(err, fs.ErrNotExist))
	}
	plain := errors.New("no URL")
	if Error(plain) != plain || Error(nil) != nil {
		t.Error("an error without credentials was changed")
	}
}
