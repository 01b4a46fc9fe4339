package bgp

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/internal/kubeindex"
	"github.com/portico-lb/portico/internal/testenv"
	"github.com/portico-lb/portico/model"
)

// stalledStatus is a client whose status writes hang until the test ends,
// as writes to an overloaded apiserver do; entered is closed at the first.
type stalledStatus struct {
	client.Client
	entered chan struct{}
	done    <-chan struct{}
}

func (c *stalledStatus) Status() client.SubResourceWriter {
	return stalledWriter{c.Client.Status(), c}
}

type stalledWriter struct {
	client.SubResourceWriter
	c *stalledStatus
}

func (w stalledWriter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	select {
	case <-w.c.entered:
	default:
		close(w.c.entered)
	}
	select {
	case <-w.c.done:
	case <-ctx.Done():
	}
	return ctx.Err()
}

// TestWatcherRoutesWhileStatusWriteStalls: a Service's address reaches the
// router while the node's write of its session status hangs. The status was
// written in the loop that hands routes to GoBGP, so a write to a slow
// apiserver (and during a burst of new Services the advertised count changes
// every second) held up every route behind it.
func TestWatcherRoutesWhileStatusWriteStalls(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an apiserver")
	}
	oldInterval, oldRetry := StatusInterval, ConnectRetry
	StatusInterval, ConnectRetry = 20*time.Millisecond, time.Second
	t.Cleanup(func() { StatusInterval, ConnectRetry = oldInterval, oldRetry })
	env := testenv.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := startRouter(t, 64512, 21181, 64513, "")

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	for _, o := range []client.Object{
		node,
		&lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor"}, Spec: lbv1.BGPPeerSpec{
			Address: "127.0.0.1", Port: int32(r.port), PeerASN: 64512, MyASN: 64513}},
		&lbv1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "routed"}, Spec: lbv1.IPPoolSpec{
			Addresses: []string{"10.64.0.0/24"}, Announce: lbv1.AnnounceBGP}},
	} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if err := env.Client.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}

	c, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme,
		ByObject: map[client.Object]cache.ByObject{&corev1.Secret{}: {Namespaces: map[string]cache.Config{"default": {}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := kubeindex.Register(ctx, c); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	stalled := &stalledStatus{Client: env.Client, entered: make(chan struct{}), done: ctx.Done()}
	log := testr.NewWithOptions(t, testr.Options{Verbosity: 1})
	w := &Watcher{Self: "n1", Namespace: "default", Cache: c, Client: stalled, Recorder: noEvents{},
		Speaker: NewSpeaker(SpeakerConfig{RouterID: netip.MustParseAddr("127.0.0.1"), NodeName: "n1", Log: log})}
	stopped := make(chan error, 1)
	go func() { stopped <- w.Start(logr.NewContext(ctx, log)) }()
	defer func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-stalled.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the watcher never wrote its session status")
	}

	// The status write now hangs. A new Service's address must still
	// reach the router.
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To("lb.portico.dev/local"),
			Ports: []corev1.ServicePort{{Name: "p", Port: 80}}}}
	if err := env.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, &lbv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: lbv1.LoadBalancerSpec{Class: model.LocalClass}}); err != nil {
		t.Fatal(err)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "10.64.0.5"}}
	if err := env.Client.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !slices.Contains(r.routes(t), "10.64.0.5/32") {
		if time.Now().After(deadline) {
			t.Fatalf("10.64.0.5/32 did not reach the router within 15s while a status write hung (router has %v)", r.routes(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
