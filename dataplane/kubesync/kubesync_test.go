package kubesync

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache/informertest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/knftables"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/dataplane"
	"github.com/portico-lb/portico/healthcheck"
	"github.com/portico-lb/portico/internal/kubeindex/kubeindextest"
	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/providers"
)

func service(name, ip string, hcPort int32) *corev1.Service {
	class := providers.Class("local")
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class,
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal, HealthCheckNodePort: hcPort,
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
		},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: ip}}}},
	}
}

// record is the operator's LoadBalancer record of a Service it serves
// through the local class.
func record(svc *corev1.Service) *lbv1.LoadBalancer {
	return &lbv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name}, Spec: lbv1.LoadBalancerSpec{Class: providers.Class("local")}}
}

func endpointSlice(svc string, addrs ...string) *discoveryv1.EndpointSlice {
	name, proto, port, node := "http", corev1.ProtocolTCP, int32(8080), "node-a"
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: svc + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Protocol: &proto, Port: &port}},
	}
	for _, a := range addrs {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, NodeName: &node})
	}
	return es
}

func freePort(t *testing.T) int32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return int32(ln.Addr().(*net.TCPAddr).Port)
}

// eventually polls cond for up to 5 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func healthBody(port int32) string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

func TestSyncerFollowsServicesAndSlices(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hcPort := freePort(t)
	web, webSlice := service("web", "203.0.113.10", hcPort), endpointSlice("web", "10.0.0.1")
	other := service("other", "203.0.113.11", 0)
	other.Spec.LoadBalancerClass = nil // another implementation's Service
	// Served through the operator's --default-class: no class in its spec,
	// its record says local.
	byDefault := service("bydefault", "203.0.113.12", 0)
	byDefault.Spec.LoadBalancerClass = nil
	// Asks for local, but no operator serves it: nothing is recorded.
	unrecorded := service("unrecorded", "203.0.113.13", 0)
	reader := kubeindextest.WithIndexes(fake.NewClientBuilder().WithScheme(scheme.New())).WithObjects(web, record(web), webSlice, other, endpointSlice("other", "10.0.0.9"),
		byDefault, record(byDefault), endpointSlice("bydefault", "10.0.0.7"), unrecorded, endpointSlice("unrecorded", "10.0.0.8")).Build()

	informers := &informertest.FakeInformers{Scheme: scheme.New()}
	svcInf, err := informers.FakeInformerFor(ctx, &corev1.Service{})
	if err != nil {
		t.Fatal(err)
	}
	sliceInf, err := informers.FakeInformerFor(ctx, &discoveryv1.EndpointSlice{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := informers.FakeInformerFor(ctx, &lbv1.LoadBalancer{}); err != nil {
		t.Fatal(err)
	}
	nft := knftables.NewFake(knftables.InetFamily, "portico")
	dp, err := dataplane.New(dataplane.Options{NFT: nft, NodeName: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	health := healthcheck.NewServer(healthcheck.Options{BindAddresses: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
	defer health.Close()
	s := &Syncer{Informers: informers, Reader: reader, Dataplane: dp, Health: health, NodeName: "node-a"}
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()

	has := func(sub string) func() bool { return func() bool { return strings.Contains(nft.Dump(), sub) } }
	eventually(t, "the initial sync programs web", has("203.0.113.10 . 80 . 0 : 10.0.0.1 . 8080"))
	eventually(t, "the initial sync programs the default-class Service", has("203.0.113.12 . 80 . 0 : 10.0.0.7 . 8080"))
	if d := nft.Dump(); strings.Contains(d, "203.0.113.11") || strings.Contains(d, "203.0.113.13") {
		t.Error("a Service the operator does not serve through local was programmed")
	}
	eventually(t, "the health check reports one local endpoint", func() bool { return strings.HasPrefix(healthBody(hcPort), "200 ") })

	// An endpoint change reaches the table through the slice informer.
	changed := endpointSlice("web", "10.0.0.2", "10.0.0.3")
	changed.ResourceVersion = ""
	if err := reader.Update(ctx, mustGetForUpdate(t, reader, changed)); err != nil {
		t.Fatal(err)
	}
	sliceInf.Update(webSlice, changed)
	eventually(t, "the endpoint change is programmed", func() bool {
		d := nft.Dump()
		return strings.Contains(d, ": 10.0.0.2 . 8080") && strings.Contains(d, ": 10.0.0.3 . 8080") && !strings.Contains(d, ": 10.0.0.1 . 8080")
	})
	eventually(t, "the health check counts two", func() bool { return strings.Contains(healthBody(hcPort), `"localEndpoints": 2`) })

	// Deleting the Service removes it and closes its health check port.
	if err := reader.Delete(ctx, web); err != nil {
		t.Fatal(err)
	}
	svcInf.Delete(web)
	eventually(t, "the deleted service leaves the table", func() bool { return !strings.Contains(nft.Dump(), "203.0.113.10") })
	eventually(t, "the health check port closes", func() bool {
		return !strings.HasPrefix(healthBody(hcPort), "200") && !strings.HasPrefix(healthBody(hcPort), "503")
	})

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start returned %v", err)
	}
}

// mustGetForUpdate copies the stored resourceVersion onto obj.
func mustGetForUpdate(t *testing.T, c client.Client, obj *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	t.Helper()
	var cur discoveryv1.EndpointSlice
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), &cur); err != nil {
		t.Fatal(err)
	}
	obj.ResourceVersion = cur.ResourceVersion
	return obj
}

// gatedNFT counts transactions and holds the one after the initial sync
// until released, so the changes that arrive meanwhile queue up.
type gatedNFT struct {
	*knftables.Fake
	mu   sync.Mutex
	runs int
	gate chan struct{}
}

func (g *gatedNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	g.mu.Lock()
	g.runs++
	n := g.runs
	g.mu.Unlock()
	if n == 2 {
		<-g.gate
	}
	return g.Fake.Run(ctx, tx)
}

func (g *gatedNFT) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.runs
}

// TestSyncerBatchesABurst: Services that arrive while the data plane is busy
// are programmed together, in one nft run, not one run each. Each run makes
// nft read the whole table, so a run per Service fell behind a burst of a
// thousand Services by minutes while BGP already routed their addresses to
// the node (issue 17).
func TestSyncerBatchesABurst(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := service("s0", "203.0.113.100", 0)
	reader := kubeindextest.WithIndexes(fake.NewClientBuilder().WithScheme(scheme.New())).Build()
	informers := &informertest.FakeInformers{Scheme: scheme.New()}
	svcInf, err := informers.FakeInformerFor(ctx, &corev1.Service{})
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{&discoveryv1.EndpointSlice{}, &lbv1.LoadBalancer{}} {
		if _, err := informers.FakeInformerFor(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	nft := &gatedNFT{Fake: knftables.NewFake(knftables.InetFamily, "portico"), gate: make(chan struct{})}
	dp, err := dataplane.New(dataplane.Options{NFT: nft, NodeName: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	s := &Syncer{Informers: informers, Reader: reader, Dataplane: dp, NodeName: "node-a"}
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	eventually(t, "the initial sync", func() bool { return nft.count() == 1 })

	add := func(svc *corev1.Service) {
		for _, obj := range []client.Object{svc, record(svc), endpointSlice(svc.Name, "10.0.0.1")} {
			if err := reader.Create(ctx, obj); err != nil {
				t.Fatal(err)
			}
		}
		svcInf.Add(svc)
	}
	add(first)
	eventually(t, "the first Service's run", func() bool { return nft.count() == 2 })
	const burst = 50
	for i := 1; i <= burst; i++ {
		add(service(fmt.Sprintf("s%d", i), fmt.Sprintf("203.0.113.%d", i), 0))
	}
	close(nft.gate)
	eventually(t, "the burst is programmed", func() bool {
		d := nft.Dump()
		for i := 1; i <= burst; i++ {
			if !strings.Contains(d, fmt.Sprintf("203.0.113.%d . 80 . 0 : 10.0.0.1 . 8080", i)) {
				return false
			}
		}
		return true
	})
	// The initial sync, the first Service, then the burst: each with at
	// most one more run for the byte counters.
	if n := nft.count(); n > 5 {
		t.Errorf("%d Services arriving together cost %d nft runs, want at most 5", burst, n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start returned %v", err)
	}
}

// TestBuildReadsOnlyItsSlices: the incremental sync reads a changed
// Service's EndpointSlices through the cache's index, not by a label
// selector that walks every slice in the namespace (a forwarder on a
// 10,000-Service cluster walked them all on every endpoint change).
func TestBuildReadsOnlyItsSlices(t *testing.T) {
	ctx := context.Background()
	web := service("web", "203.0.113.10", 0)
	objs := []client.Object{web, record(web), endpointSlice("web", "10.0.0.1")}
	const others = 300
	for i := range others {
		objs = append(objs, endpointSlice(fmt.Sprintf("other-%d", i), "10.0.1.1"))
	}
	reader := &kubeindextest.WalkCounting{Client: kubeindextest.WithIndexes(fake.NewClientBuilder().WithScheme(scheme.New())).WithObjects(objs...).Build()}
	s := &Syncer{Reader: reader, NodeName: "node-a", Class: providers.Class("local")}
	out, ok, err := s.build(ctx, client.ObjectKeyFromObject(web))
	if err != nil || !ok {
		t.Fatalf("build: ok=%v err=%v", ok, err)
	}
	if len(out.Ports) != 1 || len(out.Ports[0].Endpoints) != 1 {
		t.Fatalf("built %+v, want web's port with its one endpoint", out.Ports)
	}
	if reader.Walked > 1 {
		t.Errorf("reading one Service's EndpointSlices walked %d slices (%d others in its namespace), want 1", reader.Walked, others)
	}
}
