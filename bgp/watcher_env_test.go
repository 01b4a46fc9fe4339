package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/kubeindex"
	"github.com/portico-lb/portico/internal/testenv"
	"github.com/portico-lb/portico/model"
)

type noEvents struct{}

func (noEvents) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...interface{}) {
}

// TestWatcherFollowsNodeLabels runs the forwarder's BGP watcher on the real
// apiserver with an in-process router: a BGPPeer's nodeSelector picks the
// node by label; relabelling the node out of it closes the session (the
// router loses the route) and relabelling it back opens it again, each
// within seconds, with the cache's resync period at an hour (waiting for it
// would fail). The watcher already replanned on any event of its own Node;
// this keeps it so now that heartbeats no longer replan (TestWatcherMarks).
func TestWatcherFollowsNodeLabels(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an apiserver")
	}
	old := ConnectRetry
	ConnectRetry = time.Second
	t.Cleanup(func() { ConnectRetry = old })
	env := testenv.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := startRouter(t, 64512, 21181, 64513, "")

	const ns = "portico-system"
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	node := gen.Node("n1", "127.0.0.1", gen.WithLabel("rack", "a"))
	if err := testenv.CreateNodeWithStatus(ctx, env.Client, node); err != nil {
		t.Fatal(err)
	}
	p := pool("routed", lbv1.AnnounceBGP, "192.0.2.0/28")
	bp := peer("tor", "127.0.0.1", func(s *lbv1.BGPPeerSpec) {
		s.Port = int32(r.port)
		s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "a"}}
	})
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(model.LocalClass),
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}
	rec := &lbv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"}, Spec: lbv1.LoadBalancerSpec{Class: model.LocalClass}}
	for _, o := range []client.Object{&p, &bp, svc, rec} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatalf("creating %T: %v", o, err)
		}
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}
	if err := env.Client.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}

	c, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme, SyncPeriod: ptr.To(time.Hour),
		ByObject: map[client.Object]cache.ByObject{&corev1.Secret{}: {Namespaces: map[string]cache.Config{ns: {}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := kubeindex.Register(ctx, c); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	sp := NewSpeaker(SpeakerConfig{RouterID: netip.MustParseAddr("127.0.0.1"), NodeName: "n1", Log: testr.NewWithOptions(t, testr.Options{Verbosity: 1})})
	w := &Watcher{Self: "n1", Namespace: ns, Cache: c, Client: env.Client, Recorder: noEvents{}, Speaker: sp}
	done := make(chan error, 1)
	go func() { done <- w.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watcher: %v", err)
		}
	})

	routed := func(want bool) func() error {
		return func() error {
			got := slices.Contains(r.routes(t), "192.0.2.1/32")
			if got != want {
				return fmt.Errorf("router has %v, want the route: %v", r.routes(t), want)
			}
			return nil
		}
	}
	relabel := func(rack string) time.Time {
		t.Helper()
		var cur corev1.Node
		if err := env.Client.Get(ctx, client.ObjectKey{Name: "n1"}, &cur); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Labels["rack"] = rack
		if err := env.Client.Patch(ctx, &cur, patch); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
	// open: whether the speaker holds a session with the peer, which the
	// watcher decides; the router then takes its own time to accept a
	// session it saw deconfigured (GoBGP's idle hold), so the route's
	// return is only waited for.
	open := func(want bool) func() error {
		return func() error {
			if _, got := sp.Sessions(ctx)["tor"]; got != want {
				return fmt.Errorf("session with tor open: %v, want %v", got, want)
			}
			return nil
		}
	}
	within := func(d time.Duration, what string, f func() error) {
		t.Helper()
		start := time.Now()
		waitFor(t, what, f)
		if took := time.Since(start); took > d {
			t.Errorf("%s took %s, want within %s", what, took.Round(time.Millisecond), d)
		} else {
			t.Logf("%s after %s", what, took.Round(time.Millisecond))
		}
	}
	waitFor(t, "route from the selected node", routed(true))

	relabel("b")
	within(3*time.Second, "session closed after the node left the peer's selector", open(false))
	within(3*time.Second, "route withdrawn", routed(false))
	relabel("a")
	within(3*time.Second, "session opened after the node is selected again", open(true))
	waitFor(t, "route after the node is selected again", routed(true))
}
