package scheduler

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
)

// Metrics are the server's Prometheus metrics, in a registry of its own
// (no global state: two servers in one process, as in tests, do not
// collide). Counters and histograms count what this process saw; the
// gauges of queue and pool are read from the store at each scrape, so
// every server on a shared database reports the same.
type Metrics struct {
	reg *prometheus.Registry

	queueWait     *prometheus.HistogramVec
	jobDuration   *prometheus.HistogramVec
	cacheHits     prometheus.Counter
	cacheLookups  prometheus.Counter
	artifactBytes prometheus.Counter
	artifactFiles prometheus.Counter
	webhooks      *prometheus.CounterVec
}

// queueStatter is what the scrape reads of the queue; *SQL has it.
type queueStatter interface {
	QueueStats(ctx context.Context) ([]QueueStat, error)
}

// QueueStat is the queued jobs of one label set.
type QueueStat struct {
	Labels string // comma-separated, sorted; "" for jobs any agent may run
	Jobs   int
	Oldest time.Time
}

func newMetrics(s *Server) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jobrun_queue_wait_seconds",
			Help:    "Time from a job being queued to an agent leasing it, by the job's agent labels.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2.5, 12), // 50ms .. ~3h
		}, []string{"labels"}),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jobrun_job_duration_seconds",
			Help:    "Duration of finished job attempts as their agents measured it, by result.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14), // 1s .. ~4.5h
		}, []string{"result"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobrun_cache_hits_total",
			Help: "Caches that finished jobs found warm. The hit ratio is rate(jobrun_cache_hits_total) / rate(jobrun_cache_lookups_total).",
		}),
		cacheLookups: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobrun_cache_lookups_total",
			Help: "Caches that finished jobs mounted.",
		}),
		artifactBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobrun_artifact_bytes_total",
			Help: "Bytes of artifacts committed to the artifact store.",
		}),
		artifactFiles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobrun_artifact_files_total",
			Help: "Artifact files committed to the artifact store.",
		}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobrun_webhook_deliveries_total",
			Help: "Webhook deliveries received, by forge and result.",
		}, []string{"forge", "result"}),
	}
	m.reg.MustRegister(m.queueWait, m.jobDuration, m.cacheHits, m.cacheLookups, m.artifactBytes, m.artifactFiles, m.webhooks,
		newStateCollector(s),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the registry the metrics are in, for more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.metrics }

// WebhookDelivery counts one webhook delivery from forge ("github",
// "gitlab", "gitea", or "other" for any forge jobrun does not read: the
// label set is fixed) with its result: for example "queued" (a run was
// made), "ignored" (no workflow trigger matched), "bad_signature",
// "bad_request", "unknown_forge", "not_found" (a ref or commit the
// repository lacks) or "error".
func (m *Metrics) WebhookDelivery(forge, result string) {
	if m == nil {
		return
	}
	m.webhooks.WithLabelValues(forge, result).Inc()
}

func (m *Metrics) handler(log hclog.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      log.Named("metrics").StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// leased observes how long a leased job waited in the queue.
func (m *Metrics) leased(ctx context.Context, st Store, a api.Attempt) {
	if m == nil {
		return
	}
	j, err := st.Job(ctx, a.Job)
	if err != nil || j.Started == nil {
		return // only a metric is lost; the lease itself went out
	}
	m.queueWait.WithLabelValues(strings.Join(j.Labels, ",")).Observe(j.Started.Sub(j.Queued).Seconds())
}

// finished observes a job attempt's result.
func (m *Metrics) finished(r api.Result) {
	if m == nil {
		return
	}
	m.jobDuration.WithLabelValues(r.Status).Observe(time.Duration(r.Duration).Seconds())
	// The handlers refuse negative counts; a counter would panic on one.
	m.cacheHits.Add(float64(max(r.CacheHits, 0)))
	m.cacheLookups.Add(float64(max(r.Caches, 0)))
}

// committed counts an attempt's committed artifacts.
func (m *Metrics) committed(man *artifacts.Manifest) {
	if m == nil {
		return
	}
	for _, f := range man.Files {
		m.artifactBytes.Add(float64(max(f.Size, 0)))
	}
	m.artifactFiles.Add(float64(len(man.Files)))
}

// stateCollector reads the queue and the pool from the store at scrape
// time.
type stateCollector struct {
	s                               *Server
	depth, age, online, slots, busy *prometheus.Desc
}

func newStateCollector(s *Server) *stateCollector {
	return &stateCollector{s: s,
		depth:  prometheus.NewDesc("jobrun_queue_depth", "Jobs queued and not yet leased, by their agent labels.", []string{"labels"}, nil),
		age:    prometheus.NewDesc("jobrun_queue_oldest_wait_seconds", "How long the oldest queued job of each label set has waited.", []string{"labels"}, nil),
		online: prometheus.NewDesc("jobrun_agents_online", "Agents that heartbeated within the lease timeout.", nil, nil),
		slots:  prometheus.NewDesc("jobrun_agent_slots", "Job slots of the online agents.", nil, nil),
		busy:   prometheus.NewDesc("jobrun_agent_slots_busy", "Job slots of the online agents running a job.", nil, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.depth, c.age, c.online, c.slots, c.busy} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := time.Now()
	if q, ok := c.s.st.(queueStatter); ok {
		stats, err := q.QueueStats(ctx)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.depth, err)
		}
		for _, st := range stats {
			ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(st.Jobs), st.Labels)
			ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, now.Sub(st.Oldest).Seconds(), st.Labels)
		}
	}
	as, err := c.s.st.Agents(ctx, c.s.cfg.LeaseTimeout, now)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.online, err)
		return
	}
	online, slots, busy := 0, 0, 0
	for _, a := range as {
		if a.Online {
			online++
			slots += a.Slots
			busy += a.Busy
		}
	}
	ch <- prometheus.MustNewConstMetric(c.online, prometheus.GaugeValue, float64(online))
	ch <- prometheus.MustNewConstMetric(c.slots, prometheus.GaugeValue, float64(slots))
	ch <- prometheus.MustNewConstMetric(c.busy, prometheus.GaugeValue, float64(busy))
}

// QueueStats counts the queued jobs by label set, with the oldest's
// queue time.
func (s *SQL) QueueStats(ctx context.Context) ([]QueueStat, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT labels, COUNT(*), MIN(queued_at) FROM jobs WHERE status = 'queued' GROUP BY labels ORDER BY labels`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []QueueStat
	for rows.Next() {
		var labels string
		var n int
		var oldest int64
		if err := rows.Scan(&labels, &n, &oldest); err != nil {
			return nil, err
		}
		out = append(out, QueueStat{Labels: strings.Join(strList(labels), ","), Jobs: n, Oldest: fromMS(oldest)})
	}
	return out, rows.Err()
}
