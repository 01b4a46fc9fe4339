package forwarder

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-lb/portico/dataplane"
	"github.com/portico-lb/portico/usage"
)

// byteReporter reads the data plane's per-address byte counters every
// Interval, exports them as portico_forwarder_bytes_total and keeps the
// snapshot the Lease carries to the operator's local usage meter
// (usage.AnnotationForwarderBytes).
type byteReporter struct {
	Read     func(ctx context.Context) (dataplane.Bytes, error)
	Interval time.Duration
	Now      func() time.Time

	mu       sync.Mutex
	last     dataplane.Bytes
	snapshot string
}

var bytesDesc = prometheus.NewDesc("portico_forwarder_bytes_total",
	"Bytes this node forwarded to (direction=in) and from (direction=out) each LoadBalancer address, counted by nftables since the counters' epoch (a re-created table starts them over).",
	[]string{"address", "direction"}, nil)

// Describe implements prometheus.Collector.
func (r *byteReporter) Describe(ch chan<- *prometheus.Desc) { ch <- bytesDesc }

// Collect implements prometheus.Collector: the last reading.
func (r *byteReporter) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for dir, m := range map[string]map[netip.Addr]uint64{"in": r.last.In, "out": r.last.Out} {
		for a, b := range m {
			ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(b), a.String(), dir)
		}
	}
}

// read takes one reading; a failed one clears the snapshot, so that the
// Lease never carries counters older than the time it names.
func (r *byteReporter) read(ctx context.Context) error {
	b, err := r.Read(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.snapshot = ""
		return err
	}
	s := &usage.ByteSnapshot{Epoch: b.Epoch, Time: r.Now().UTC().Truncate(time.Second), Bytes: map[netip.Addr]uint64{}}
	for _, m := range []map[netip.Addr]uint64{b.In, b.Out} {
		for a, n := range m {
			s.Bytes[a] += n
		}
	}
	v, err := s.Encode()
	if err != nil {
		r.snapshot = ""
		return err
	}
	r.last, r.snapshot = b, v
	return nil
}

// Annotations is the Lease's Annotations hook.
func (r *byteReporter) Annotations() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return map[string]string{usage.AnnotationForwarderBytes: r.snapshot}
}

// Start reads every Interval until ctx ends.
func (r *byteReporter) Start(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx).WithName("bytes")
	failing := false
	tick := time.NewTicker(r.Interval)
	defer tick.Stop()
	// The first reading waits one Interval: the data plane's first sync
	// (which makes the counters) comes first.
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		err := r.read(ctx)
		if err != nil && !failing {
			log.Error(err, "Reading the per-address byte counters; the Lease carries no byte snapshot until it succeeds")
		}
		failing = err != nil
	}
}
