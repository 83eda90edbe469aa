package s3client

import (
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	env := map[string]string{"JOBRUN_S3_ACCESS_KEY": "ak", "JOBRUN_S3_SECRET_KEY": "sk"}
	c, err := ParseURL("s3://bucket/ci/artifacts?endpoint=http://127.0.0.1:9000&region=eu", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Endpoint: "http://127.0.0.1:9000", Bucket: "bucket", Prefix: "ci/artifacts", Region: "eu", AccessKey: "ak", SecretKey: "sk"}
	if c != want {
		t.Fatalf("got %+v, want %+v", c, want)
	}
	aws := map[string]string{"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s"}
	if c, err := ParseURL("s3://b", func(k string) string { return aws[k] }); err != nil || c.AccessKey != "a" || c.Endpoint != "https://s3.amazonaws.com" {
		t.Fatalf("AWS keys and default endpoint: %+v %v", c, err)
	}
	for raw, msg := range map[string]string{
		"http://b":            "want s3://",
		"s3:///x":             "want s3://",
		"s3://b?endpont=x":    `unknown parameter "endpont"`,
		"s3://b?endpoint=h:1": "no keys",
	} {
		getenv := func(k string) string { return env[k] }
		if strings.Contains(raw, "h:1") {
			getenv = func(string) string { return "" }
		}
		if _, err := ParseURL(raw, getenv); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseURL(%q) = %v, want %q", raw, err, msg)
		}
	}
}
