package announce

import "github.com/prometheus/client_golang/prometheus"

// The forwarder's announcement metrics (docs/local-mode.md lists them).
var (
	metricAnnounced = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "portico_forwarder_addresses_announced",
		Help: "Load-balancer addresses this node announces (answers ARP/NDP for) now.",
	})
	metricTakeovers = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portico_forwarder_takeovers_total",
		Help: "Addresses this node started announcing.",
	})
	metricReleases = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portico_forwarder_releases_total",
		Help: "Addresses this node stopped announcing.",
	})
	metricQuorum = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "portico_forwarder_quorum",
		Help: "1 when this node hears a majority of its peers (and may announce), else 0.",
	})
	metricPeers = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "portico_forwarder_peers",
		Help: "Nodes in the peer set (nodes running a forwarder), this one included.",
	})
	metricPeersAlive = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "portico_forwarder_peers_alive",
		Help: "Nodes heard on the heartbeat within --dead-after that may announce, this one included when it may.",
	})
	metricSent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portico_forwarder_heartbeats_sent_total",
		Help: "Heartbeat datagrams sent.",
	})
	metricReceived = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portico_forwarder_heartbeats_received_total",
		Help: "Heartbeat datagrams accepted (authenticated, fresh, from a peer).",
	})
	metricRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_forwarder_heartbeats_rejected_total",
		Help: "Heartbeat datagrams dropped, by reason: oversized, malformed, unauthenticated, too_many_claims, unknown_peer, wrong_source, replayed, rate_limited.",
	}, []string{"reason"})
	// metricPeerRTT has no peer label: per peer it would be N*(N-1)
	// series across an N-node cluster, times the buckets (docs/monitoring.md).
	metricPeerRTT = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "portico_forwarder_peer_rtt_seconds",
		Help:    "Round-trip time of heartbeats to peers and back (echoed by the peer, its holding time subtracted), all peers together.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	})
	metricClaimsDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portico_forwarder_heartbeat_claims_dropped_total",
		Help: "Claims in accepted heartbeats ignored because the cluster has no such address.",
	})
	metricStalls = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portico_forwarder_stalls_total",
		Help: "Times this forwarder found it had not run for longer than a heartbeat interval (CPU starvation, a pause); it then holds its judgement of peers until it has read the heartbeats that waited.",
	})
	metricInterfaceUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "portico_forwarder_interface_up",
		Help: "1 when the announcing interface exists, is up and its ARP/NDP sockets are open, else 0.",
	})
	metricInterfaceDown = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portico_forwarder_interface_down_total",
		Help: "Times the announcing interface was lost (down, removed, or missing at start).",
	})
)

// Collectors are the metrics of this package, for the forwarder to register.
// Every reject reason is present from the start, at zero.
func Collectors() []prometheus.Collector {
	for _, r := range []string{RejectOversized, RejectMalformed, RejectUnauthentic, RejectTooManyClaims,
		RejectUnknownPeer, RejectWrongSource, RejectReplayed, RejectRateLimited} {
		metricRejected.WithLabelValues(r)
	}
	return []prometheus.Collector{metricAnnounced, metricTakeovers, metricReleases, metricQuorum, metricPeers,
		metricPeersAlive, metricSent, metricReceived, metricRejected, metricPeerRTT, metricClaimsDropped, metricStalls, metricInterfaceUp, metricInterfaceDown}
}
