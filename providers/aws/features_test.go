package aws_test

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/aws"
	"github.com/portico-lb/portico/providers/aws/awsfake"
)

const testCert = "arn:aws:acm:us-east-1:123456789012:certificate/0b5e2e6c-1111-2222-3333-444455556666"

func listenerByPort(t *testing.T, f *awsfake.Fake, port int) awsfake.Listener {
	t.Helper()
	for _, l := range f.Listeners() {
		if l.Port == port {
			return l
		}
	}
	t.Fatalf("no listener on port %d in %+v", port, f.Listeners())
	return awsfake.Listener{}
}

func groupByARN(t *testing.T, f *awsfake.Fake, arn string) awsfake.TargetGroup {
	t.Helper()
	for _, g := range f.TargetGroups() {
		if g.ARN == arn {
			return g
		}
	}
	t.Fatalf("no target group %s", arn)
	return awsfake.TargetGroup{}
}

func liveTargets(g awsfake.TargetGroup) []string {
	var out []string
	for _, t := range g.Targets {
		if t.Drained.IsZero() {
			out = append(out, t.ID+":"+strconv.Itoa(t.Port))
		}
	}
	slices.Sort(out)
	return out
}

func TestListenersTargetGroupsAndHealthChecks(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := key("shapes")
	d := e.desired(k, []string{"n1", "n2"}, []providers.Port{
		{Name: "https", Protocol: providers.TCP, Port: 443, NodePort: 30443},
		{Name: "dns-tcp", Protocol: providers.TCP, Port: 53, NodePort: 30053},
		{Name: "dns-udp", Protocol: providers.UDP, Port: 53, NodePort: 30053},
		{Name: "syslog", Protocol: providers.UDP, Port: 514, NodePort: 30514},
	})
	d.TrafficPolicy, d.HealthCheckNodePort = providers.TrafficPolicyLocal, 32000
	d.SourceRanges = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("198.51.100.7/32")}
	d.Annotations = map[string]string{
		aws.AnnotationSSLCert:             testCert,
		aws.AnnotationSSLPorts:            "https",
		aws.AnnotationHealthCheckInterval: "30",
		aws.AnnotationHealthyThreshold:    "3",
		aws.AnnotationProxyProtocolV2:     "true",
		aws.AnnotationCrossZone:           "true",
		"unrelated.example.com/key":       "ignored",
	}
	st := ensureOK(t, e, d)

	if len(st.Ingress) != 1 || !strings.HasSuffix(st.Ingress[0].Hostname, ".elb.us-east-1.amazonaws.com") {
		t.Fatalf("ingress = %+v, want the NLB's DNS name", st.Ingress)
	}
	lb, ok := e.fake.LoadBalancerByName(aws.LoadBalancerName(k))
	if !ok {
		t.Fatal("no load balancer")
	}
	if lb.Scheme != "internet-facing" || lb.Attributes["load_balancing.cross_zone.enabled"] != "true" {
		t.Errorf("scheme %s cross-zone %s, want internet-facing and true", lb.Scheme, lb.Attributes["load_balancing.cross_zone.enabled"])
	}
	var subnets []string
	for _, z := range lb.Zones {
		subnets = append(subnets, z.SubnetID)
	}
	slices.Sort(subnets)
	if !slices.Equal(subnets, e.public) {
		t.Errorf("subnets %v, want the cluster's public subnets %v (not another cluster's)", subnets, e.public)
	}

	tls := listenerByPort(t, e.fake, 443)
	if tls.Protocol != "TLS" || tls.Certificate != testCert || tls.SSLPolicy == "" {
		t.Errorf("listener 443 = %+v, want TLS with the annotated certificate and a policy", tls)
	}
	if g := groupByARN(t, e.fake, tls.TargetGroupARN); g.Protocol != "TCP" {
		t.Errorf("TLS listener forwards to a %s group, want TCP", g.Protocol)
	}
	dns := listenerByPort(t, e.fake, 53)
	if dns.Protocol != "TCP_UDP" {
		t.Errorf("port 53 with TCP and UDP: listener protocol %s, want TCP_UDP", dns.Protocol)
	}
	if l := listenerByPort(t, e.fake, 514); l.Protocol != "UDP" {
		t.Errorf("listener 514 protocol %s, want UDP", l.Protocol)
	}

	g := groupByARN(t, e.fake, dns.TargetGroupARN)
	if g.Protocol != "TCP_UDP" || g.TargetType != "instance" {
		t.Errorf("group for 53 = %s/%s, want TCP_UDP/instance", g.Protocol, g.TargetType)
	}
	hc := g.HealthCheck
	if hc.Protocol != "HTTP" || hc.Port != "32000" || hc.Path != "/healthz" || hc.Interval != 30 || hc.HealthyCount != 3 {
		t.Errorf("health check %+v, want HTTP :32000/healthz every 30s, healthy after 3", hc)
	}
	if g.Attributes["proxy_protocol_v2.enabled"] != "true" {
		t.Errorf("proxy protocol v2 not enabled: %v", g.Attributes)
	}
	want := []string{e.fake.InstanceID("n1") + ":30053", e.fake.InstanceID("n2") + ":30053"}
	slices.Sort(want)
	if got := liveTargets(g); !slices.Equal(got, want) {
		t.Errorf("targets %v, want instances on the node port %v", got, want)
	}
	for _, r := range serviceResources(e.fake) {
		if !providers.Owns(r.Tags, k) {
			t.Errorf("%s %s lacks ownership tags: %v", r.Kind, r.ID, r.Tags)
		}
		if r.Kind == "targetGroup" || r.Kind == "loadBalancer" {
			name := strings.TrimPrefix(r.ID[strings.Index(r.ID, "/")+1:], "net/")
			if n := name[:strings.Index(name, "/")]; len(n) > 32 {
				t.Errorf("%s name %q is longer than 32 characters", r.Kind, n)
			}
		}
	}

	sgs := serviceSecurityGroups(e.fake)
	if len(sgs) != 1 || !slices.Contains(lb.SecurityGroups, sgs[0].ID) {
		t.Fatalf("security groups %+v, want one attached to the NLB (%v)", sgs, lb.SecurityGroups)
	}
	var rules []string
	for _, r := range sgs[0].Ingress {
		rules = append(rules, r.Protocol+"/"+strconv.Itoa(r.FromPort)+"/"+r.CIDR)
	}
	slices.Sort(rules)
	wantRules := []string{
		"tcp/443/198.51.100.7/32", "tcp/443/203.0.113.0/24", "tcp/53/198.51.100.7/32", "tcp/53/203.0.113.0/24",
		"udp/514/198.51.100.7/32", "udp/514/203.0.113.0/24", "udp/53/198.51.100.7/32", "udp/53/203.0.113.0/24",
	}
	if !slices.Equal(rules, wantRules) {
		t.Errorf("ingress rules\n%v\nwant\n%v", rules, wantRules)
	}
	if st.Cost.Kind != "aws-nlb" || st.Cost.Region != "us-east-1" || st.Cost.Units["listeners"] != 3 || st.Cost.Units["targetGroups"] != 3 || st.Cost.Units["targets"] != 6 {
		t.Errorf("cost inputs %+v", st.Cost)
	}
	// The usage meter reads CloudWatch by the NLB's ARN.
	if lbARN := st.Resources[0].ID; st.Cost.MeterID != lbARN || !strings.Contains(lbARN, ":loadbalancer/net/") {
		t.Errorf("cost meter id %q, want the NLB's ARN %q", st.Cost.MeterID, lbARN)
	}

	// Narrowing the source ranges revokes the old rules; nothing else moves.
	before := e.fake.MutatingCalls()
	d.SourceRanges = d.SourceRanges[:1]
	ensureOK(t, e, d)
	calls := mutatingSince(e.fake, before)
	if !slices.Equal(calls, []string{"RevokeSecurityGroupIngress"}) {
		t.Errorf("narrowing source ranges made %v, want one RevokeSecurityGroupIngress", calls)
	}
	if n := len(serviceSecurityGroups(e.fake)[0].Ingress); n != 4 {
		t.Errorf("after narrowing, %d rules, want 4", n)
	}
}

func mutatingSince(f *awsfake.Fake, n int) []string {
	var out []string
	i := 0
	for _, c := range f.Calls() {
		if !c.Mutating {
			continue
		}
		if i >= n {
			out = append(out, c.Action)
		}
		i++
	}
	return out
}

func TestPodTargets(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := key("pods")
	d := e.desired(k, []string{"n1"}, []providers.Port{{Name: "http", Protocol: providers.TCP, Port: 80, TargetPort: 8080}})
	d.TargetPods = true
	d.Endpoints = []providers.Endpoint{
		{IP: netip.MustParseAddr("10.1.0.5"), Ready: true, Ports: map[string]int32{"http": 8080}},
		{IP: netip.MustParseAddr("10.1.0.6"), Ready: true, Ports: map[string]int32{"http": 9090}},
		{IP: netip.MustParseAddr("10.1.0.7"), Ready: false, Ports: map[string]int32{"http": 8080}},
	}
	st := ensureOK(t, e, d)
	g := groupByARN(t, e.fake, listenerByPort(t, e.fake, 80).TargetGroupARN)
	if g.TargetType != "ip" {
		t.Fatalf("target type %s, want ip", g.TargetType)
	}
	if got := liveTargets(g); !slices.Equal(got, []string{"10.1.0.5:8080", "10.1.0.6:9090"}) {
		t.Errorf("targets %v, want the ready pods on their ports", got)
	}
	if st.Backends.Total != 2 {
		t.Errorf("backends total %d, want 2", st.Backends.Total)
	}
	// Switching to node ports replaces the group (target type is immutable)
	// and deletes the old one once the listener moved.
	d.TargetPods = false
	d.Ports[0].NodePort = 30080
	ensureOK(t, e, d)
	groups := e.fake.TargetGroups()
	if len(groups) != 1 || groups[0].TargetType != "instance" {
		t.Fatalf("after switching to node ports: groups %+v, want one instance group", groups)
	}
}

func TestNodeChangeRegistersBeforeDeregistering(t *testing.T) {
	e := newEnv(t, envOptions{fake: awsfake.Options{Consistency: 20 * time.Millisecond}})
	k := key("nodes")
	ports := []providers.Port{tcp(80, 30080), tcp(443, 30443)}
	ensureOK(t, e, e.desired(k, []string{"n1", "n2"}, ports))
	e.fake.WaitSettled(t.Context())
	before := e.fake.MutatingCalls()
	st := ensureOK(t, e, e.desired(k, []string{"n2", "n3"}, ports))
	calls := mutatingSince(e.fake, before)
	want := []string{"RegisterTargets", "RegisterTargets", "DeregisterTargets", "DeregisterTargets"}
	if !slices.Equal(calls, want) {
		t.Fatalf("node swap made %v, want %v", calls, want)
	}
	if st.Backends.Total != 2 {
		t.Errorf("backends total %d, want 2", st.Backends.Total)
	}
	// The draining target is not registered again on the next resync.
	before = e.fake.MutatingCalls()
	ensureOK(t, e, e.desired(k, []string{"n2", "n3"}, ports))
	if calls := mutatingSince(e.fake, before); len(calls) != 0 {
		t.Errorf("resync while a target drains made %v, want nothing", calls)
	}
}

func TestSchemeAndAnnotatedNetwork(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := key("scheme")
	d := e.desired(k, []string{"n1"}, []providers.Port{tcp(80, 30080)})
	d.Scheme = providers.SchemeInternal
	first := ensureOK(t, e, d)
	lb, _ := e.fake.LoadBalancerByName(aws.LoadBalancerName(k))
	if lb.Scheme != "internal" || len(lb.Zones) != len(e.private) {
		t.Fatalf("internal load balancer: scheme %s zones %+v, want internal in %v", lb.Scheme, lb.Zones, e.private)
	}

	// Becoming internet-facing with pinned subnets and Elastic IPs replaces
	// the NLB under the same name; the target group stays.
	ours := map[string]string{aws.TagClusterPrefix + testCluster: "owned"}
	e.fake.AddElasticIP("eipalloc-0aaaaaaaaaaaaaaa1", "192.0.2.10", ours)
	e.fake.AddElasticIP("eipalloc-0aaaaaaaaaaaaaaa2", "192.0.2.11", ours)
	groupsBefore := e.fake.TargetGroups()
	d.Scheme = providers.SchemeExternal
	d.Annotations = map[string]string{
		aws.AnnotationSubnets:        e.public[1] + "," + e.public[0],
		aws.AnnotationEIPAllocations: "eipalloc-0aaaaaaaaaaaaaaa1,eipalloc-0aaaaaaaaaaaaaaa2",
	}
	second := ensureOK(t, e, d)
	lb, _ = e.fake.LoadBalancerByName(aws.LoadBalancerName(k))
	if lb.Scheme != "internet-facing" {
		t.Fatalf("scheme %s after change, want internet-facing", lb.Scheme)
	}
	pins := map[string]string{}
	for _, z := range lb.Zones {
		pins[z.SubnetID] = z.AllocationID
	}
	if pins[e.public[1]] != "eipalloc-0aaaaaaaaaaaaaaa1" || pins[e.public[0]] != "eipalloc-0aaaaaaaaaaaaaaa2" || len(pins) != 2 {
		t.Errorf("subnet mappings %v, want allocations paired with subnets in annotation order", pins)
	}
	if first.Ingress[0].Hostname == second.Ingress[0].Hostname {
		t.Errorf("replaced load balancer kept hostname %s", first.Ingress[0].Hostname)
	}
	if g := e.fake.TargetGroups(); len(g) != 1 || g[0].ARN != groupsBefore[0].ARN {
		t.Errorf("target groups changed across the replacement: %+v -> %+v", groupsBefore, g)
	}
	if n := len(e.fake.Listeners()); n != 1 {
		t.Errorf("%d listeners after replacement, want 1", n)
	}
}

func TestDeleteRidesOutDependencies(t *testing.T) {
	e := newEnv(t, envOptions{fake: awsfake.Options{Consistency: 150 * time.Millisecond, MaxPageSize: 1}})
	keys := []providers.Key{key("del-a"), key("del-b")}
	for _, k := range keys {
		ensureOK(t, e, e.desired(k, []string{"n1"}, []providers.Port{tcp(80, 30080), udp(53, 30053)}))
	}
	e.fake.WaitSettled(t.Context())
	err := e.p.Delete(t.Context(), keys[0])
	if _, ok := providers.IsRetryable(err); !ok {
		t.Fatalf("first Delete while the security group is still held: got %v, want RetryError", err)
	}
	deleteOK(t, e, keys[0])
	for _, r := range serviceResources(e.fake) {
		if providers.Owns(r.Tags, keys[0]) {
			t.Errorf("Delete left %s %s", r.Kind, r.ID)
		}
	}
	if n := len(e.fake.TargetGroups()); n != 2 {
		t.Errorf("deleting one Service left %d target groups, want the other Service's 2", n)
	}
	if _, err := e.p.Observe(context.Background(), keys[1]); err != nil {
		t.Errorf("Observe of the other Service: %v", err)
	}
}

func TestEndpointFromEnvironment(t *testing.T) {
	f := awsfake.New(awsfake.Options{})
	t.Cleanup(f.Close)
	f.SeedNetwork(testCluster)
	t.Setenv("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2", f.URL())
	t.Setenv("AWS_ENDPOINT_URL_EC2", f.URL())
	t.Setenv("AWS_ACCESS_KEY_ID", awsfake.TestAccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", awsfake.TestSecretAccessKey)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	cfg := &aws.Config{MaxAttempts: 2, APIQPS: 100, APIBurst: 10}
	p, err := cfg.Factory()(t.Context(), providers.Options{ClusterID: testCluster})
	if err != nil {
		t.Fatal(err)
	}
	d := providersDesired(f, key("env"))
	if _, err := p.Ensure(t.Context(), d); err != nil {
		t.Fatalf("Ensure through AWS_ENDPOINT_URL_*: %v", err)
	}
	if _, ok := f.LoadBalancerByName(aws.LoadBalancerName(key("env"))); !ok {
		t.Fatal("the load balancer was not created at the endpoint named by the environment")
	}
}

func providersDesired(f *awsfake.Fake, k providers.Key) *providers.LoadBalancer {
	return &providers.LoadBalancer{
		Key:   k,
		Ports: []providers.Port{tcp(80, 30080)},
		Nodes: []providers.Node{{Name: "n1", ProviderID: "aws:///us-east-1a/" + f.InstanceID("n1")}},
	}
}

// A run interrupted after moving a listener to a new target group, before it
// deleted the old one, leaves an unattached group; the next Ensure deletes it.
func TestInterruptedGroupSwapIsSwept(t *testing.T) {
	e := newEnv(t, envOptions{fake: awsfake.Options{Consistency: 20 * time.Millisecond}})
	k := key("swap")
	d := e.desired(k, []string{"n1"}, []providers.Port{{Name: "http", Protocol: providers.TCP, Port: 80, NodePort: 30080, TargetPort: 8080}})
	ensureOK(t, e, d)
	e.fake.WaitSettled(t.Context())

	d.TargetPods = true
	d.Endpoints = []providers.Endpoint{{IP: netip.MustParseAddr("10.1.0.5"), Ready: true}}
	// CreateTargetGroup, RegisterTargets, ModifyListener succeed; the
	// DeleteTargetGroup of the old group does not.
	e.fake.CrashAfter(3)
	if _, err := e.p.Ensure(t.Context(), d); err == nil {
		t.Fatal("Ensure succeeded through the crash")
	}
	e.fake.Recover()
	if n := len(e.fake.TargetGroups()); n != 2 {
		t.Fatalf("after the crash %d target groups, want the old and the new", n)
	}
	e.fake.WaitSettled(t.Context())
	ensureOK(t, e, d)
	groups := e.fake.TargetGroups()
	if len(groups) != 1 || groups[0].TargetType != "ip" {
		t.Fatalf("after recovery: %+v, want only the ip group", groups)
	}
	// Once converged, a resync lists nothing account-wide and changes nothing.
	e.fake.WaitSettled(t.Context())
	before, calls := e.fake.MutatingCalls(), len(e.fake.Calls())
	ensureOK(t, e, d)
	if e.fake.MutatingCalls() != before {
		t.Error("resync after the sweep made mutating calls")
	}
	describes := 0
	for _, c := range e.fake.Calls()[calls:] {
		if c.Action == "DescribeTargetGroups" {
			describes++
		}
	}
	if describes != 1 {
		t.Errorf("resync made %d DescribeTargetGroups calls, want 1 (the load balancer's own groups, no sweep)", describes)
	}
}
