// Package promtest reads a /metrics endpoint the way Prometheus does, for
// tests of the server's and the agent's metrics.
package promtest

import (
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Scrape fetches url and parses it with Prometheus' text parser.
func Scrape(t testing.TB, url string) map[string]*dto.MetricFamily {
	t.Helper()
	return ScrapeToken(t, url, "")
}

// ScrapeToken is Scrape with a bearer token, as Prometheus'
// authorization.credentials sends it.
func ScrapeToken(t testing.TB, url, token string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// Sample finds the sample of family name that carries labels, failing t
// if there is none.
func Sample(t testing.TB, fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
	for _, m := range f.Metric {
		if hasLabels(m, labels) {
			return m
		}
	}
	t.Fatalf("no %s with labels %v in %v", name, labels, f)
	return nil
}

func hasLabels(m *dto.Metric, labels map[string]string) bool {
	for k, v := range labels {
		found := false
		for _, lp := range m.Label {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
