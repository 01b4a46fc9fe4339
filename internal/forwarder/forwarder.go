// Package forwarder assembles portico-forwarder, beside internal/operator:
// flags, the announcer with its heartbeat membership and ARP/NDP responder,
// the watcher that feeds it from the cluster, and the nftables data plane
// with its health-check server. cmd/portico-forwarder is a thin main.
package forwarder

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portico-lb/portico/announce"
	"github.com/portico-lb/portico/announce/cluster"
	"github.com/portico-lb/portico/dataplane"
	"github.com/portico-lb/portico/dataplane/kubesync"
	"github.com/portico-lb/portico/healthcheck"
	"github.com/portico-lb/portico/internal/scheme"
)

// Options are the forwarder's settings.
type Options struct {
	NodeName   string
	Interface  string
	Kubeconfig string

	HeartbeatListen string
	HeartbeatPort   uint16
	Interval        time.Duration
	DeadAfter       time.Duration
	QuorumAfter     time.Duration

	// Static mode, without an apiserver: fixed addresses and peers.
	StaticAddresses []string
	Peers           []string

	// Data plane.
	KubeProxyFree bool
	Cleanup       bool
	NoDataplane   bool
}

// DefaultOptions returns the defaults the flags show.
func DefaultOptions() Options {
	return Options{
		NodeName:        os.Getenv("NODE_NAME"),
		Interface:       "eth0",
		HeartbeatListen: "0.0.0.0",
		HeartbeatPort:   7473,
		Interval:        50 * time.Millisecond,
		DeadAfter:       250 * time.Millisecond,
		QuorumAfter:     175 * time.Millisecond,
	}
}

// AddFlags registers the forwarder's flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "Name of this node's Node object (default $NODE_NAME).")
	fs.StringVar(&o.Interface, "interface", o.Interface, "Interface to answer ARP/NDP on and send gratuitous announcements from.")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Path to a kubeconfig; in-cluster config when empty.")
	fs.StringVar(&o.HeartbeatListen, "heartbeat-address", o.HeartbeatListen, "Local IP to receive peer heartbeats on.")
	fs.Uint16Var(&o.HeartbeatPort, "heartbeat-port", o.HeartbeatPort, "UDP port of the peer heartbeat, the same on every node.")
	fs.DurationVar(&o.Interval, "heartbeat-interval", o.Interval, "Interval between heartbeats to every peer.")
	fs.DurationVar(&o.DeadAfter, "dead-after", o.DeadAfter, "A peer silent this long is dead and its addresses move; bounds the failover time.")
	fs.DurationVar(&o.QuorumAfter, "quorum-after", o.QuorumAfter, "A node that has not heard a majority of peers for this long stops announcing (must be below --dead-after).")
	fs.StringSliceVar(&o.StaticAddresses, "static-address", nil, "Static mode: announce these addresses without an apiserver (repeatable).")
	fs.StringSliceVar(&o.Peers, "peer", nil, "Static mode: a peer as name=IP (repeatable); the node list is these plus this node.")
	fs.BoolVar(&o.KubeProxyFree, "kube-proxy-free", o.KubeProxyFree, "Also serve NodePorts and healthCheckNodePorts, for clusters without kube-proxy. Leave off where kube-proxy runs (docs/dataplane.md).")
	fs.BoolVar(&o.Cleanup, "cleanup", o.Cleanup, "Delete Portico's nftables table (inet portico) and exit.")
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
	if _, err := netip.ParseAddr(o.HeartbeatListen); err != nil {
		errs = append(errs, fmt.Errorf("--heartbeat-address: %w", err))
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

// Run assembles the forwarder and runs it until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Cleanup {
		dp, err := dataplane.New(dataplane.Options{})
		if err != nil {
			return err
		}
		return dp.Cleanup(ctx)
	}
	listen, _ := netip.ParseAddr(o.HeartbeatListen)
	members := announce.NewMembers(announce.MembersConfig{
		Self:        o.NodeName,
		Listen:      netip.AddrPortFrom(listen, o.HeartbeatPort),
		Interval:    o.Interval,
		DeadAfter:   o.DeadAfter,
		QuorumAfter: o.QuorumAfter,
	})
	responder, err := announce.NewResponder(o.Interface)
	if err != nil {
		return err
	}
	ann := announce.NewAnnouncer(announce.AnnouncerConfig{Self: o.NodeName, Members: members, Speaker: responder})
	components := []Component{members.Run, responder.Run, ann.Run}

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
		Scheme:  scheme.New(),
		Metrics: metricsserver.Options{BindAddress: "0"},
		// Components log through the logger in ctx.
		BaseContext: func() context.Context { return ctx },
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	w := &cluster.Watcher{
		Self: o.NodeName, HeartbeatPort: o.HeartbeatPort,
		Cache: mgr.GetCache(), Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("portico-forwarder"),
		Members: members, Announcer: ann,
	}
	components = append(components, w.Start)
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
		components = append(components, sy.Start)
	}
	for _, c := range components {
		if err := mgr.Add(manager.RunnableFunc(c)); err != nil {
			return err
		}
	}
	return mgr.Start(ctx)
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
