package agent

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jobrun/jobrun/cache"
)

// Metrics are a pool agent's Prometheus metrics, in a registry of their
// own: the jobs it runs and how they ended, and its image store's fetches
// and unpacks (it is an image.Observer; see image.Store.SetObserver).
type Metrics struct {
	reg     *prometheus.Registry
	running prometheus.Gauge
	jobs    *prometheus.CounterVec
	fetches *prometheus.CounterVec
	unpack  prometheus.Histogram
	evicts  *prometheus.CounterVec
	freed   *prometheus.CounterVec
}

// NewMetrics makes an agent's metrics.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jobrun_agent_running_jobs",
			Help: "Jobs this agent is running.",
		}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobrun_agent_jobs_total",
			Help: "Jobs this agent ran, by result.",
		}, []string{"result"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobrun_agent_image_pulls_total",
			Help: "Images brought into the store, by source (registry, layout) and result (ok, error).",
		}, []string{"source", "result"}),
		unpack: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "jobrun_agent_image_unpack_seconds",
			Help:    "Time to unpack one image layer.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10), // 10ms .. ~38s
		}),
		evicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobrun_agent_evictions_total",
			Help: "Cache volumes and images evicted to keep within the disk budgets, by store (cache, image).",
		}, []string{"store"}),
		freed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobrun_agent_evicted_bytes_total",
			Help: "Bytes freed on disk by budget evictions, by store (cache, image).",
		}, []string{"store"}),
	}
	m.evicts.WithLabelValues("cache")
	m.evicts.WithLabelValues("image")
	m.reg.MustRegister(m.running, m.jobs, m.fetches, m.unpack, m.evicts, m.freed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// WatchCaches reports the host's dependency cache volumes at each scrape:
// how many there are and their bytes on disk as last measured (at each
// volume's release), the figure LRU eviction works against.
func (m *Metrics) WatchCaches(c *cache.Manager) {
	list := func() []cache.Info {
		vols, err := c.List()
		if err != nil {
			return nil // the scrape shows 0 rather than failing
		}
		return vols
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "jobrun_agent_cache_volumes",
			Help: "Dependency cache volumes on this agent.",
		}, func() float64 { return float64(len(list())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "jobrun_agent_cache_bytes",
			Help: "Bytes on disk of this agent's dependency cache volumes, as measured when each was last released.",
		}, func() float64 {
			var n int64
			for _, v := range list() {
				n += v.Size
			}
			return float64(n)
		}),
	)
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Registry is the registry the metrics are in, for more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Fetched counts an image fetch (image.Observer).
func (m *Metrics) Fetched(source string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.fetches.WithLabelValues(source, result).Inc()
}

// Unpacked observes a layer's unpack time (image.Observer).
func (m *Metrics) Unpacked(d time.Duration) { m.unpack.Observe(d.Seconds()) }

// jobStarted and jobEnded bracket a leased job; a nil *Metrics counts
// nothing.
func (m *Metrics) jobStarted() {
	if m != nil {
		m.running.Inc()
	}
}

func (m *Metrics) jobEnded(st Status) {
	if m != nil {
		m.running.Dec()
		m.jobs.WithLabelValues(string(st)).Inc()
	}
}

// evicted counts n entries of store evicted, freeing bytes; a nil
// *Metrics counts nothing.
func (m *Metrics) evicted(store string, n int, bytes int64) {
	if m != nil {
		m.evicts.WithLabelValues(store).Add(float64(n))
		m.freed.WithLabelValues(store).Add(float64(bytes))
	}
}
