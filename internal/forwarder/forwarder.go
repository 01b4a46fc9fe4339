// Package forwarder assembles portico-forwarder, beside internal/operator:
// flags, the announcer with its heartbeat membership and ARP/NDP responder,
// the watcher that feeds it from the cluster, and the nftables data plane
// with its health-check server. cmd/portico-forwarder is a thin main.
package forwarder

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portico-lb/portico/announce"
	"github.com/portico-lb/portico/announce/cluster"
	"github.com/portico-lb/portico/bgp"
	"github.com/portico-lb/portico/dataplane"
	"github.com/portico-lb/portico/dataplane/kubesync"
	"github.com/portico-lb/portico/healthcheck"
	"github.com/portico-lb/portico/internal/eventrec"
	"github.com/portico-lb/portico/internal/kubeindex"
	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/model"
)

// Options are the forwarder's settings.
type Options struct {
	NodeName   string
	Interface  string
	Kubeconfig string
	// Namespace holds the forwarders' Leases.
	Namespace string

	HeartbeatListen   string
	HeartbeatPort     uint16
	HeartbeatKeyFile  string
	HeartbeatInsecure bool
	Interval          time.Duration
	DeadAfter         time.Duration
	QuorumAfter       time.Duration

	// Static mode, without an apiserver: fixed addresses and peers.
	StaticAddresses []string
	Peers           []string

	// Data plane.
	KubeProxyFree bool
	Cleanup       bool
	NoDataplane   bool

	// BGP opens sessions with the BGPPeers that select this node.
	BGP bool

	MetricsAddr string
	ProbeAddr   string
}

// DefaultOptions returns the defaults the flags show.
func DefaultOptions() Options {
	return Options{
		NodeName:      os.Getenv("NODE_NAME"),
		Namespace:     cmp.Or(os.Getenv("POD_NAMESPACE"), "portico-system"),
		HeartbeatPort: 7473,
		MetricsAddr:   ":7474",
		ProbeAddr:     ":7475",
		Interval:      50 * time.Millisecond,
		DeadAfter:     250 * time.Millisecond,
		QuorumAfter:   175 * time.Millisecond,
		BGP:           true,
	}
}

// AddFlags registers the forwarder's flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "Name of this node's Node object (default $NODE_NAME).")
	fs.StringVar(&o.Interface, "interface", o.Interface, "Interface to answer ARP/NDP on and send gratuitous announcements from (default: the one holding the node's address).")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Path to a kubeconfig; in-cluster config when empty.")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "Namespace of the forwarders' Leases, which make the heartbeat peer set ($POD_NAMESPACE when set).")
	fs.StringVar(&o.HeartbeatListen, "heartbeat-address", o.HeartbeatListen, "This node's IP: heartbeats are received on it (default: the Node's InternalIP; required in static mode).")
	fs.Uint16Var(&o.HeartbeatPort, "heartbeat-port", o.HeartbeatPort, "UDP port of the peer heartbeat, the same on every node.")
	fs.StringVar(&o.HeartbeatKeyFile, "heartbeat-key-file", o.HeartbeatKeyFile, "File of heartbeat keys, one per line (at least 16 bytes each): the first signs, all verify; re-read when it changes (docs/local-mode.md, key rotation).")
	fs.BoolVar(&o.HeartbeatInsecure, "heartbeat-insecure", o.HeartbeatInsecure, "Run the heartbeat without a key: anyone who can send UDP to the nodes can move or silence addresses. For experiments only.")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "Address serving Prometheus metrics at /metrics; 0 disables.")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", o.ProbeAddr, "Address serving /healthz and /readyz; 0 disables.")
	fs.DurationVar(&o.Interval, "heartbeat-interval", o.Interval, "Interval between heartbeats to every peer.")
	fs.DurationVar(&o.DeadAfter, "dead-after", o.DeadAfter, "A peer silent this long is dead and its addresses move; bounds the failover time.")
	fs.DurationVar(&o.QuorumAfter, "quorum-after", o.QuorumAfter, "A node that has not heard a majority of peers for this long stops announcing (must be below --dead-after).")
	fs.StringSliceVar(&o.StaticAddresses, "static-address", nil, "Static mode: announce these addresses without an apiserver (repeatable).")
	fs.StringSliceVar(&o.Peers, "peer", nil, "Static mode: a peer as name=IP (repeatable); the node list is these plus this node.")
	fs.BoolVar(&o.KubeProxyFree, "kube-proxy-free", o.KubeProxyFree, "Also serve NodePorts and healthCheckNodePorts, for clusters without kube-proxy. Leave off where kube-proxy runs (docs/dataplane.md).")
	fs.BoolVar(&o.Cleanup, "cleanup", o.Cleanup, "Delete Portico's nftables table (inet portico) and exit.")
	fs.BoolVar(&o.BGP, "bgp", o.BGP, "Advertise addresses of BGP IPPools to the BGPPeers that select this node (docs/bgp.md); false never opens a BGP session. Not in static mode.")
	fs.BoolVar(&o.NoDataplane, "no-dataplane", o.NoDataplane, "Announce addresses only; do not program nftables (another data plane moves the traffic).")
}

// Static reports whether the forwarder runs without an apiserver.
func (o *Options) Static() bool { return len(o.StaticAddresses) > 0 || len(o.Peers) > 0 }

// Validate checks the flags.
func (o *Options) Validate() error {
	var errs []error
	if o.Cleanup {
		return nil
	}
	if o.NodeName == "" {
		errs = append(errs, errors.New("--node-name (or $NODE_NAME) is required"))
	}
	if o.Interval <= 0 || o.DeadAfter <= o.Interval {
		errs = append(errs, errors.New("--dead-after must exceed --heartbeat-interval > 0"))
	}
	if o.QuorumAfter >= o.DeadAfter {
		errs = append(errs, errors.New("--quorum-after must be below --dead-after, or a partition leaves two announcers"))
	}
	if o.HeartbeatListen != "" {
		if _, err := netip.ParseAddr(o.HeartbeatListen); err != nil {
			errs = append(errs, fmt.Errorf("--heartbeat-address: %w", err))
		}
	} else if o.Static() {
		errs = append(errs, errors.New("--heartbeat-address (this node's IP) is required in static mode"))
	}
	switch {
	case o.HeartbeatKeyFile == "" && !o.HeartbeatInsecure:
		errs = append(errs, errors.New("--heartbeat-key-file is required (or --heartbeat-insecure, which lets anyone on the network move addresses)"))
	case o.HeartbeatKeyFile != "" && o.HeartbeatInsecure:
		errs = append(errs, errors.New("--heartbeat-key-file and --heartbeat-insecure exclude each other"))
	}
	if _, _, err := o.static(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (o *Options) static() (announce.Inputs, map[string]netip.AddrPort, error) {
	in := announce.Inputs{ReadyNodes: []string{o.NodeName}}
	peers := map[string]netip.AddrPort{}
	for _, p := range o.Peers {
		name, ip, ok := strings.Cut(p, "=")
		a, err := netip.ParseAddr(ip)
		if !ok || name == "" || err != nil {
			return in, nil, fmt.Errorf("--peer %q: want name=IP", p)
		}
		peers[name] = netip.AddrPortFrom(a, o.HeartbeatPort)
		in.ReadyNodes = append(in.ReadyNodes, name)
	}
	for _, s := range o.StaticAddresses {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return in, nil, fmt.Errorf("--static-address %q: %w", s, err)
		}
		in.Addresses = append(in.Addresses, announce.Address{IP: a, Service: "static"})
	}
	return in, peers, nil
}

// Component is one long-running part of the forwarder. Announcement is made
// of three (membership, responder, announcer); the data plane plugs in as
// another.
type Component func(ctx context.Context) error

// Run assembles the forwarder and runs it until ctx ends. A lost or missing
// interface is not an error: the forwarder waits it out, not ready.
func Run(ctx context.Context, o Options) error {
	log := logr.FromContextOrDiscard(ctx)
	if o.Cleanup {
		dp, err := dataplane.New(dataplane.Options{})
		if err != nil {
			return err
		}
		return dp.Cleanup(ctx)
	}
	keys := announce.InsecureKeyring
	if !o.HeartbeatInsecure {
		var err error
		if keys, err = announce.LoadKeyFile(o.HeartbeatKeyFile); err != nil {
			return err
		}
	} else {
		log.Info("WARNING: heartbeats are not authenticated (--heartbeat-insecure): anyone who can reach the nodes can move or silence addresses")
	}
	reg := ctrlmetrics.Registry
	for _, c := range slices.Concat(announce.Collectors(), kubesync.Collectors(), bgp.Collectors()) {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}

	var cl client.Client
	var nodeIP netip.Addr
	if !o.Static() {
		cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
		if err != nil {
			return fmt.Errorf("loading kubeconfig: %w", err)
		}
		if cl, err = client.New(cfg, client.Options{Scheme: scheme.New()}); err != nil {
			return fmt.Errorf("creating client: %w", err)
		}
		if o.HeartbeatListen == "" || o.Interface == "" {
			if nodeIP, err = waitNodeIP(ctx, cl, o.NodeName); err != nil {
				return err
			}
		}
	}
	if o.HeartbeatListen != "" {
		a, _ := netip.ParseAddr(o.HeartbeatListen)
		if !nodeIP.IsValid() {
			nodeIP = a
		}
		o.HeartbeatListen = a.String()
	} else {
		o.HeartbeatListen = nodeIP.String()
	}
	listen, _ := netip.ParseAddr(o.HeartbeatListen)
	members := announce.NewMembers(announce.MembersConfig{
		Self:        o.NodeName,
		Listen:      netip.AddrPortFrom(listen, o.HeartbeatPort),
		Keys:        keys,
		Interval:    o.Interval,
		DeadAfter:   o.DeadAfter,
		QuorumAfter: o.QuorumAfter,
	})
	responder, err := announce.NewResponderFor(announce.ResponderConfig{Interface: o.Interface, Address: nodeIP})
	if err != nil {
		return err
	}
	ann := announce.NewAnnouncer(announce.AnnouncerConfig{Self: o.NodeName, Members: members, Speaker: responder})
	responder.OnReadyChange = ann.Kick
	log.Info("Heartbeat", "address", members.Config().Listen, "keys", !o.HeartbeatInsecure)
	probes := &probes{checks: map[string]func() error{
		"heartbeat": members.Ready,
		"interface": responder.Ready,
		"announcer": func() error {
			if s := ann.Standby(); s != "" {
				return errors.New(s)
			}
			return nil
		},
	}}
	components := []Component{members.Run, responder.Run, ann.Run, probes.serve(o.MetricsAddr, o.ProbeAddr)}
	if !o.HeartbeatInsecure {
		components = append(components, watchKeys(o.HeartbeatKeyFile, keys, members))
	}

	if o.Static() {
		in, peers, _ := o.static()
		members.SetPeers(peers)
		ann.SetInputs(in)
		return runAll(ctx, components)
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme: scheme.New(),
		// The forwarder serves its own metrics and probes (probes), also
		// in static mode.
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&coordinationv1.Lease{}: {Namespaces: map[string]cache.Config{o.Namespace: {}}},
			// BGPPeer password Secrets are read from this namespace only.
			&corev1.Secret{}: {Namespaces: map[string]cache.Config{o.Namespace: {}}},
		}},
		// Components log through the logger in ctx.
		BaseContext: func() context.Context { return ctx },
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	// The data plane's sync and the BGP watch read one Service's
	// EndpointSlices by index, not by walking the namespace.
	if err := kubeindex.Register(ctx, mgr.GetFieldIndexer()); err != nil {
		return fmt.Errorf("indexing the cache: %w", err)
	}
	// An Event on the Node when the interface is lost and when it is back
	// (a lost link delays it until the apiserver is reachable again).
	rec, err := eventrec.ForManager(mgr, "portico-forwarder", 0)
	if err != nil {
		return err
	}
	nodeRef := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: o.NodeName}}
	var readyMu sync.Mutex
	ready := true
	responder.OnReadyChange = func() {
		ann.Kick()
		err := responder.Ready()
		readyMu.Lock()
		defer readyMu.Unlock()
		switch {
		case err != nil && ready:
			rec.Eventf(nodeRef, nil, corev1.EventTypeWarning, "InterfaceDown", "Announce",
				"portico-forwarder announces nothing from this node: %v", err)
		case err == nil && !ready:
			rec.Eventf(nodeRef, nil, corev1.EventTypeNormal, "InterfaceUp", "Announce", "portico-forwarder answers ARP/NDP again")
		}
		ready = err == nil
	}
	w := &cluster.Watcher{
		Self: o.NodeName, HeartbeatPort: o.HeartbeatPort, Namespace: o.Namespace,
		Cache: mgr.GetCache(), Client: mgr.GetClient(), Recorder: rec,
		Members: members, Announcer: ann,
	}
	lease := &cluster.Lease{Client: cl, Namespace: o.Namespace, Node: o.NodeName}
	components = append(components, w.Start, lease.Start)
	if o.BGP {
		sp := bgp.NewSpeaker(bgp.SpeakerConfig{RouterID: listen, NodeName: o.NodeName, LocalAddresses: []netip.Addr{listen},
			Log: log.WithName("bgp"), BFDHelper: true})
		bw := &bgp.Watcher{Self: o.NodeName, Namespace: o.Namespace, Cache: mgr.GetCache(), Client: mgr.GetClient(),
			Recorder: rec, Speaker: sp}
		components = append(components, bw.Start)
	}
	if !o.NoDataplane {
		dp, err := dataplane.New(dataplane.Options{NodeName: o.NodeName, KubeProxyFree: o.KubeProxyFree, ConntrackCleaner: dataplane.NewConntrackCleaner()})
		if err != nil {
			return err
		}
		var hc *healthcheck.Server
		if o.KubeProxyFree {
			hc = healthcheck.NewServer(healthcheck.Options{})
			defer hc.Close()
		}
		sy := &kubesync.Syncer{Informers: mgr.GetCache(), Reader: mgr.GetCache(), Dataplane: dp, Health: hc, NodeName: o.NodeName}
		// Per-address byte counters: a metric, and a snapshot on the
		// Lease for the operator's local usage meter.
		br := &byteReporter{Read: dp.Bytes, Interval: time.Minute, Now: time.Now}
		if err := reg.Register(br); err != nil {
			return err
		}
		lease.Annotations = br.Annotations
		components = append(components, sy.Start, br.Start)
	}
	for _, c := range components {
		if err := mgr.Add(manager.RunnableFunc(c)); err != nil {
			return err
		}
	}
	return mgr.Start(ctx)
}

// waitNodeIP reads the Node's InternalIP (model.NodeIP), retrying until the
// Node has one: it is the heartbeat address peers send to and, by default,
// picks the announcing interface.
func waitNodeIP(ctx context.Context, cl client.Client, name string) (netip.Addr, error) {
	log := logr.FromContextOrDiscard(ctx)
	for i := 0; ; i++ {
		var n corev1.Node
		err := cl.Get(ctx, client.ObjectKey{Name: name}, &n)
		if err == nil {
			if ip, ok := model.NodeIP(&n); ok {
				return ip, nil
			}
			err = fmt.Errorf("node %s has no InternalIP yet", name)
		}
		if i == 0 || i%30 == 0 {
			log.Info("Waiting for this node's address", "Node", klog.KRef("", name), "reason", err.Error())
		}
		select {
		case <-ctx.Done():
			return netip.Addr{}, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// keyReload is how often the key file is read again.
var keyReload = 5 * time.Second

// watchKeys re-reads the key file every few seconds and hands a changed,
// valid ring to the heartbeat; a Secret update reaches the mounted file
// without a restart. An invalid file keeps the keys in use.
func watchKeys(path string, current *announce.Keyring, m *announce.Members) Component {
	return func(ctx context.Context) error {
		log := logr.FromContextOrDiscard(ctx).WithName("keys")
		t := time.NewTicker(keyReload)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			k, err := announce.LoadKeyFile(path)
			if err != nil {
				log.Error(err, "Reading the heartbeat keys; keeping the current ones")
				continue
			}
			if !k.Equal(current) {
				current = k
				m.SetKeys(k)
				log.Info("Heartbeat keys changed")
			}
		}
	}
}

// runAll runs every component until ctx ends or one fails.
func runAll(ctx context.Context, components []Component) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(components))
	for _, c := range components {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c(ctx); err != nil {
				errc <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}
