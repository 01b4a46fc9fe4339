package kubesync

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-lb/portico/dataplane"
)

var (
	metricSyncDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "portico_forwarder_nftables_sync_duration_seconds",
		Help:    "Time to bring the nftables data plane in line with the cluster, by kind (full or incremental).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	}, []string{"kind"})
	metricObjects = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "portico_forwarder_nftables_objects",
		Help: "What Portico's nftables table holds for its Services after the last sync, by kind (services, chains, rules, sets, elements).",
	}, []string{"kind"})
	metricSyncErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_forwarder_nftables_sync_errors_total",
		Help: "Failed data plane syncs, by kind (full or incremental); a failed incremental sync is followed by a full one.",
	}, []string{"kind"})
)

// Collectors are the data plane sync metrics, for the forwarder to register.
func Collectors() []prometheus.Collector {
	for _, k := range []string{"full", "incremental"} {
		metricSyncDuration.WithLabelValues(k)
		metricSyncErrors.WithLabelValues(k)
	}
	return []prometheus.Collector{metricSyncDuration, metricSyncErrors, metricObjects}
}

// observe runs one sync of kind and records its duration and failure.
func observe(kind string, sync func() error) error {
	t := prometheus.NewTimer(metricSyncDuration.WithLabelValues(kind))
	err := sync()
	t.ObserveDuration()
	if err != nil {
		metricSyncErrors.WithLabelValues(kind).Inc()
	}
	return err
}

// observeCounts records what the table holds.
func observeCounts(c dataplane.Counts) {
	for kind, n := range map[string]int{"services": c.Services, "chains": c.Chains, "rules": c.Rules, "sets": c.Sets, "elements": c.Elements} {
		metricObjects.WithLabelValues(kind).Set(float64(n))
	}
}
