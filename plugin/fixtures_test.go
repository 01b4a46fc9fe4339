package plugin_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	discoveryfake "k8s.io/client-go/discovery/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/plugin"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// now is the fixed clock of the unit tests.
var now = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }

// world is the cluster a unit test runs the plugin against: objects in a
// controller-runtime fake client, and discovery that serves Portico's API
// unless noCRDs is set.
type world struct {
	objs   []client.Object
	noCRDs bool
	funcs  interceptor.Funcs
}

type result struct {
	stdout, stderr string
	code           int
}

func (w world) run(t *testing.T, args ...string) result {
	t.Helper()
	c := fake.NewClientBuilder().
		WithScheme(scheme.New()).
		WithObjects(w.objs...).
		WithIndex(&corev1.Event{}, "involvedObject.name", func(o client.Object) []string {
			return []string{o.(*corev1.Event).InvolvedObject.Name}
		}).
		WithInterceptorFuncs(w.funcs).
		Build()
	disc := &discoveryfake.FakeDiscovery{Fake: &clienttesting.Fake{}}
	if !w.noCRDs {
		disc.Resources = []*metav1.APIResourceList{{
			GroupVersion: v1alpha1.GroupVersion.String(),
			APIResources: []metav1.APIResource{{Name: "loadbalancers", Namespaced: true, Kind: "LoadBalancer"}, {Name: "ippools", Kind: "IPPool"}},
		}}
	}
	var stdout, stderr bytes.Buffer
	code := plugin.Main(context.Background(), plugin.Options{
		IOStreams: genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &stdout, ErrOut: &stderr},
		Now:       func() time.Time { return now },
		NewClients: func(flags *genericclioptions.ConfigFlags) (*plugin.Clients, error) {
			ns := "default"
			if flags.Namespace != nil && *flags.Namespace != "" {
				ns = *flags.Namespace
			}
			return &plugin.Clients{Reader: c, Discovery: disc, Namespace: ns}, nil
		},
	}, args)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// golden compares got with testdata/<name>.golden; -update rewrites it.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run go test ./plugin -update after checking the change):\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

// Builders for the objects of the fixture cluster.

type lbOption func(*v1alpha1.LoadBalancer)

func loadBalancer(ns, name, class string, age time.Duration, opts ...lbOption) *v1alpha1.LoadBalancer {
	lb := &v1alpha1.LoadBalancer{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: ago(age)},
		Spec:       v1alpha1.LoadBalancerSpec{Class: class},
		Status: v1alpha1.LoadBalancerStatus{
			Class: class, Ready: "True", LastSyncTime: ptr.To(ago(30 * time.Second)),
			Conditions: []metav1.Condition{{Type: "lb.portico.dev/Ready", Status: metav1.ConditionTrue, Reason: "Ensured", Message: "load balancer is ready", LastTransitionTime: ago(age)}},
		},
	}
	for _, o := range opts {
		o(lb)
	}
	return lb
}

func withIP(ip, node string) lbOption {
	return func(lb *v1alpha1.LoadBalancer) {
		lb.Status.Addresses = append(lb.Status.Addresses, v1alpha1.LoadBalancerAddress{IP: ip, IPMode: "VIP", Node: node})
		if lb.Status.Address == "" {
			lb.Status.Address = ip
		}
	}
}

func withHostname(h string) lbOption {
	return func(lb *v1alpha1.LoadBalancer) {
		lb.Status.Addresses = append(lb.Status.Addresses, v1alpha1.LoadBalancerAddress{Hostname: h})
		lb.Status.Address = h
	}
}

func withPorts(ports ...int32) lbOption {
	return func(lb *v1alpha1.LoadBalancer) {
		for _, p := range ports {
			lb.Status.Ports = append(lb.Status.Ports, v1alpha1.PortStatus{Port: p, Protocol: "TCP"})
		}
	}
}

func withBackends(healthy, total int32) lbOption {
	return func(lb *v1alpha1.LoadBalancer) {
		lb.Status.Backends = v1alpha1.BackendStatus{Healthy: healthy, Total: total}
		lb.Status.BackendsSummary = fmt.Sprintf("%d/%d", healthy, total)
	}
}

func withCost(hourly, monthly, region, source string, items ...v1alpha1.CostItem) lbOption {
	return func(lb *v1alpha1.LoadBalancer) {
		lb.Status.Cost = &v1alpha1.CostStatus{Hourly: hourly, Monthly: monthly, Currency: "USD", Source: source, Region: region, Breakdown: items}
		lb.Status.MonthlyCost = monthly + " USD"
		lb.Status.Conditions = append(lb.Status.Conditions, metav1.Condition{Type: "lb.portico.dev/Priced", Status: metav1.ConditionTrue, Reason: "Priced", Message: "priced from " + source, LastTransitionTime: lb.CreationTimestamp})
	}
}

// withLivePrices marks the cost as read from a price API fetched ago.
func withLivePrices(source string, ago time.Duration, stale bool, sourceErr string) lbOption {
	return func(lb *v1alpha1.LoadBalancer) {
		c := lb.Status.Cost
		c.Source, c.Basis, c.Stale, c.SourceError = source, "live", stale, sourceErr
		c.FetchedAt = &metav1.Time{Time: now.Add(-ago)}
	}
}

// withUsage adds usage measured from CloudWatch an hour ago: NLCU-hours
// and processed GB over the last day and the month to date.
func withUsage(fixed, usageHourly, dayAmount, dayNLCU, dayGB, monthAmount, monthNLCU, monthGB string) lbOption {
	return func(lb *v1alpha1.LoadBalancer) {
		end := now.Add(-time.Hour)
		items := func(nlcu, amount, gb string) []v1alpha1.UsageItem {
			return []v1alpha1.UsageItem{{Item: "nlcu", Unit: "nlcu-hours", Quantity: nlcu, Amount: amount}, {Item: "processed-bytes", Unit: "GB", Quantity: gb}}
		}
		c := lb.Status.Cost
		c.Fixed = fixed
		c.Usage = &v1alpha1.UsageCost{Source: "cloudwatch:AWS/NetworkELB", MeasuredAt: metav1.NewTime(end.Add(5 * time.Minute)), Hourly: usageHourly,
			LastDay:     &v1alpha1.UsagePeriod{Start: metav1.NewTime(end.Add(-24 * time.Hour)), End: metav1.NewTime(end), Amount: dayAmount, Items: items(dayNLCU, dayAmount, dayGB)},
			MonthToDate: &v1alpha1.UsagePeriod{Start: metav1.NewTime(time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)), End: metav1.NewTime(end), Amount: monthAmount, Items: items(monthNLCU, monthAmount, monthGB)},
		}
		lb.Status.Conditions = append(lb.Status.Conditions, metav1.Condition{Type: "lb.portico.dev/UsageMeasured", Status: metav1.ConditionTrue, Reason: "Measured", Message: "Usage read from cloudwatch:AWS/NetworkELB", LastTransitionTime: lb.CreationTimestamp})
	}
}

// withBasis sets how the price is known ("carried:us-west-1").
func withBasis(basis string) lbOption {
	return func(lb *v1alpha1.LoadBalancer) { lb.Status.Cost.Basis = basis }
}

func withPricingFailure(reason, msg string) lbOption {
	return func(lb *v1alpha1.LoadBalancer) {
		lb.Status.Conditions = append(lb.Status.Conditions, metav1.Condition{Type: "lb.portico.dev/Priced", Status: metav1.ConditionFalse, Reason: reason, Message: msg, LastTransitionTime: lb.CreationTimestamp})
	}
}

func withEndpoints(ready, total int32, nodes ...string) lbOption {
	return func(lb *v1alpha1.LoadBalancer) {
		lb.Status.Endpoints = &v1alpha1.EndpointsStatus{Ready: ready, Total: total, Nodes: nodes}
	}
}

// pendingRecord is a record the operator wrote before it had an address:
// Ready False with reason and message, no cost, no Priced condition.
func pendingRecord(reason, msg string) lbOption {
	return func(lb *v1alpha1.LoadBalancer) {
		lb.Status.Ready = "False"
		lb.Status.LastSyncTime = nil
		lb.Status.Conditions = []metav1.Condition{{Type: "lb.portico.dev/Ready", Status: metav1.ConditionFalse, Reason: reason, Message: msg, LastTransitionTime: lb.CreationTimestamp}}
	}
}

func withResources(kindIDs ...string) lbOption {
	return func(lb *v1alpha1.LoadBalancer) {
		for i := 0; i+1 < len(kindIDs); i += 2 {
			lb.Status.Resources = append(lb.Status.Resources, v1alpha1.ProviderResource{Kind: kindIDs[i], ID: kindIDs[i+1]})
		}
	}
}

func withAnnouncement(addr, node string, since time.Duration) lbOption {
	return func(lb *v1alpha1.LoadBalancer) {
		lb.Status.Announcements = append(lb.Status.Announcements, v1alpha1.Announcement{Address: addr, Node: node, Since: ptr.To(ago(since))})
	}
}

func service(ns, name, class string, age time.Duration, processed bool) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: ago(age)},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(class),
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	if processed {
		s.Status.Conditions = []metav1.Condition{{Type: "lb.portico.dev/Ready", Status: metav1.ConditionTrue, Reason: "Ensured", Message: "load balancer is ready", LastTransitionTime: ago(age)}}
	}
	return s
}

// defaultClass makes s a Service that names no class.
func defaultClass(s *corev1.Service) *corev1.Service {
	s.Spec.LoadBalancerClass = nil
	return s
}

// withCondition sets a condition on a Service.
func withCondition(s *corev1.Service, typ string, status metav1.ConditionStatus, reason, msg string) *corev1.Service {
	s.Status.Conditions = append(s.Status.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: s.CreationTimestamp})
	return s
}

func event(ns, kind, name, typ, reason, msg string, at time.Duration, count int32) *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: ns, Name: name + "." + reason + "." + at.String()},
		InvolvedObject: corev1.ObjectReference{Kind: kind, Namespace: ns, Name: name},
		Type:           typ, Reason: reason, Message: msg, Count: count,
		Source:        corev1.EventSource{Component: "portico-operator"},
		LastTimestamp: ago(at),
	}
}

func lease(holder string, renewed time.Duration) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "portico-system", Name: "portico-operator.lb.portico.dev"},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To(holder), LeaseDurationSeconds: ptr.To[int32](15),
			RenewTime: ptr.To(metav1.NewMicroTime(now.Add(-renewed))),
		},
	}
}

func pool(name string, total, assigned int64, addrs ...string) *v1alpha1.IPPool {
	return &v1alpha1.IPPool{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: ago(10 * 24 * time.Hour), Generation: 1},
		Spec:       v1alpha1.IPPoolSpec{Addresses: addrs, AutoAssign: ptr.To(true), Announce: v1alpha1.AnnounceL2}, // as the API server defaults it
		Status:     v1alpha1.IPPoolStatus{Total: total, Assigned: assigned, Free: total - assigned, ObservedGeneration: 1},
	}
}

// cluster is the fixture most tests share: an AWS and a GCP load balancer in
// shop (the GCP one in an unpriced region), a local one in edge, their
// Services, Events, a live operator Lease and two pools.
func cluster() []client.Object {
	web := loadBalancer("shop", "web", "lb.portico.dev/aws", 72*time.Hour,
		withHostname("k8s-shop-web-1a2b3c.elb.us-east-1.amazonaws.com"), withPorts(80, 443), withBackends(3, 3),
		withEndpoints(3, 3, "node-a", "node-b", "node-c"),
		withCost("0.0385", "28.105", "us-east-1", "embedded:aws-2026-11-21",
			v1alpha1.CostItem{Item: "nlb-hour", Quantity: 1, Hourly: "0.0225"},
			v1alpha1.CostItem{Item: "public-ipv4", Quantity: 2, Hourly: "0.01"}),
		withUsage("0.0325", "0.006", "0.144", "24", "120.5", "0.426", "71", "350"),
		withLivePrices("live:aws-price-list", 30*time.Hour, true, "aws-price-list: GetProducts AWSELB: AccessDeniedException: User is not authorized to perform: pricing:GetProducts"),
		withResources("loadBalancer", "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/k8s-shop-web/1a2b3c",
			"targetGroup", "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/k8s-shop-web-80/4d5e6f"))
	db := loadBalancer("shop", "db", "lb.portico.dev/gcp", 5*time.Hour,
		withIP("34.118.0.7", ""), withPorts(5432), withBackends(1, 2), withEndpoints(1, 2, "node-a"),
		withPricingFailure("RegionNotPriced", "no price for gcp-forwarding-rule in region \"me-central2\""))
	db.Status.Ready = "False"
	db.Status.Ports[0].Error = "HealthCheckFailing"
	dns := loadBalancer("edge", "dns", "lb.portico.dev/local", 26*time.Hour,
		withIP("192.0.2.10", "node-b"), withPorts(53), withBackends(2, 2), withEndpoints(2, 2, "node-a", "node-c"),
		withCost("0", "0", "", "embedded:local-2026-11-21", v1alpha1.CostItem{Item: "address", Quantity: 1, Hourly: "0"}),
		withAnnouncement("192.0.2.10", "node-b", 90*time.Minute),
		withResources("address", "192.0.2.10"))
	dns.Status.Ports = append(dns.Status.Ports, v1alpha1.PortStatus{Port: 53, Protocol: "UDP"})
	dns.Status.BGP = &v1alpha1.BGPStatus{AdvertisingNodes: []string{"node-a", "node-c"}, Addresses: []v1alpha1.BGPAddressStatus{
		{Address: "192.0.2.10", IPPool: "edge", Announce: v1alpha1.AnnounceL2AndBGP, Peers: []string{"tor-1", "tor-2"}, Nodes: []string{"node-a", "node-c"}}}}
	return []client.Object{
		web, db, dns,
		service("shop", "web", "lb.portico.dev/aws", 72*time.Hour, true),
		service("shop", "db", "lb.portico.dev/gcp", 5*time.Hour, true),
		service("edge", "dns", "lb.portico.dev/local", 26*time.Hour, true),
		event("edge", "Service", "dns", "Normal", "Ensuring", "Ensuring lb.portico.dev/local load balancer", 26*time.Hour, 1),
		event("edge", "Service", "dns", "Normal", "Ensured", "Ensured lb.portico.dev/local load balancer at 192.0.2.10", 26*time.Hour-time.Second, 1),
		event("edge", "LoadBalancer", "dns", "Normal", "Announced", "node-b announces 192.0.2.10", 90*time.Minute, 3),
		event("edge", "Pod", "dns", "Warning", "BackOff", "not about the load balancer", time.Minute, 1),
		lease("portico-operator-7d9f-abcde", 2*time.Second),
		pool("office", 14, 3, "192.0.2.0/28"),
		pool("v6", 256, 0, "2001:db8::/120"),
	}
}

// troubles is the fixture of what goes wrong for a new user, one Service
// each, in namespace lab beside a healthy local Service:
//
//	ports    100 ports
//	empty    a selector that matches no pod (Serving False, NoEndpoints)
//	plain    no class, served through the default class lb.portico.dev/local
//	waiting  pending: no address yet, hence no cost
//	other    a class no Portico backend serves
//	bare     no class and no default class that takes it
//	refused  a Portico class the operator does not run (ClassNotServed)
//	huge     an oversized annotation: a long message with its reason last
func troubles() []client.Object {
	var hundred []int32
	for p := int32(8000); len(hundred) < 98; p++ {
		hundred = append(hundred, p)
	}
	hundred = append([]int32{80, 443}, hundred...)
	long := strings.Repeat("10.0.0.1,", 120)
	hugeMsg := fmt.Sprintf("lb.portico.dev/allow-shared-ip: %q is not a sharing key: want a key of letters, digits, '.', '_' or '-', at most 63 characters", long)
	portsSvc := service("lab", "ports", "lb.portico.dev/local", 2*time.Hour, true)
	portsSvc.Spec.Ports = nil
	for _, p := range hundred {
		portsSvc.Spec.Ports = append(portsSvc.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", p), Port: p, Protocol: corev1.ProtocolTCP})
	}
	empty := withCondition(service("lab", "empty", "lb.portico.dev/local", 3*time.Hour, true), "lb.portico.dev/Serving", metav1.ConditionFalse, "NoEndpoints",
		"no ready endpoint: no pod matches the selector app=emtpy in namespace lab (kubectl get pods -n lab -l app=emtpy)")
	empty.Spec.Selector = map[string]string{"app": "emtpy"}
	local := func(name string, age time.Duration, ip string, opts ...lbOption) *v1alpha1.LoadBalancer {
		base := []lbOption{withIP(ip, "node-a"), withBackends(3, 3),
			withCost("0", "0", "", "embedded:local-2026-11-21", v1alpha1.CostItem{Item: "address", Quantity: 1, Hourly: "0"})}
		return loadBalancer("lab", name, "lb.portico.dev/local", age, append(base, opts...)...)
	}
	waiting := loadBalancer("lab", "waiting", "lb.portico.dev/aws", 10*time.Minute, withPorts(80),
		pendingRecord("ProviderRetrying", "lb.portico.dev/aws backend is retrying: the NLB is still provisioning"))
	waiting.Status.Class = ""
	huge := loadBalancer("lab", "huge", "lb.portico.dev/local", time.Hour, pendingRecord("InvalidAnnotation", hugeMsg))
	return []client.Object{
		local("ports", 2*time.Hour, "192.0.2.20", withPorts(hundred...), withEndpoints(4, 4, "node-a", "node-b")),
		portsSvc,
		local("empty", 3*time.Hour, "192.0.2.21", withPorts(80), withEndpoints(0, 0)),
		empty,
		local("plain", 4*time.Hour, "192.0.2.22", withPorts(80), withEndpoints(2, 3, "node-b")),
		defaultClass(service("lab", "plain", "", 4*time.Hour, true)),
		waiting,
		withCondition(service("lab", "waiting", "lb.portico.dev/aws", 10*time.Minute, false), "lb.portico.dev/Ready", metav1.ConditionFalse, "ProviderRetrying",
			"lb.portico.dev/aws backend is retrying: the NLB is still provisioning"),
		service("lab", "other", "example.com/other", time.Hour, false),
		defaultClass(service("lab", "bare", "", time.Hour, false)),
		withCondition(service("lab", "refused", "lb.portico.dev/azure", time.Hour, false), "lb.portico.dev/Ready", metav1.ConditionFalse, "ClassNotServed",
			"class lb.portico.dev/azure is not served by this operator (its providers: aws, gcp, local); set lb.portico.dev/release=true to let the Service go"),
		huge,
		withCondition(service("lab", "huge", "lb.portico.dev/local", time.Hour, false), "lb.portico.dev/Ready", metav1.ConditionFalse, "InvalidAnnotation", hugeMsg),
		event("lab", "Service", "huge", "Warning", "InvalidAnnotation", hugeMsg, time.Hour, 4),
		pool("spare", 16, 0, "198.51.100.0/28"),
	}
}
