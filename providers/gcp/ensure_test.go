package gcp_test

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/gcp"
	"github.com/portico-lb/portico/providers/gcp/gcpfake"
	"github.com/portico-lb/portico/providers/providertest"
)

// object returns the fake's stored object with the given ID, or fails.
func (e *env) object(t *testing.T, id string) gcpfake.Object {
	t.Helper()
	for _, r := range e.fake.Resources() {
		if r.ID == id {
			return r.Object
		}
	}
	t.Fatalf("no %s in the fake; have %v", id, e.ids())
	return nil
}

func (e *env) has(id string) bool {
	return slices.Contains(e.ids(), id)
}

func (e *env) ids() []string {
	var out []string
	for _, r := range e.fake.Resources() {
		out = append(out, r.ID)
	}
	return out
}

func regional(coll, name string) string { return "regions/" + testRegion + "/" + coll + "/" + name }
func firewall(name string) string       { return "global/firewalls/" + name }

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func ports(ps ...int32) []providers.Port {
	var out []providers.Port
	for _, p := range ps {
		out = append(out, providertest.TCP(p, 30000+p))
	}
	return out
}

func TestExternalLoadBalancerShape(t *testing.T) {
	e := newEnv(t, envOptions{tags: []string{"gke-node"}})
	k := key("web")
	d := desired(k, []string{"node-a", "node-b", "node-c"}, append(ports(80, 443), providers.Port{Name: "dns", Protocol: providers.UDP, Port: 53}))
	d.SourceRanges = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	d.SessionAffinityTimeout = time.Hour
	st, err := e.p.Ensure(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	base := gcp.BaseName(k)
	addr := e.object(t, regional("addresses", base))
	ip := addr["address"].(string)
	if got := st.Ingress[0].IP.String(); got != ip {
		t.Errorf("status IP %s, reserved address %s", got, ip)
	}
	if addr["addressType"] != "EXTERNAL" || addr["networkTier"] != "PREMIUM" {
		t.Errorf("address = %v", addr)
	}
	tcp := e.object(t, regional("forwardingRules", base+"-tcp"))
	udp := e.object(t, regional("forwardingRules", base+"-udp"))
	for _, r := range []gcpfake.Object{tcp, udp} {
		if r["IPAddress"] != ip || r["loadBalancingScheme"] != "EXTERNAL" || !strings.HasSuffix(r["backendService"].(string), regional("backendServices", base)) {
			t.Errorf("forwarding rule %v does not point %s at the backend service", r, ip)
		}
		if r["labels"].(map[string]any)["portico-managed-by"] != "portico" {
			t.Errorf("forwarding rule labels = %v", r["labels"])
		}
	}
	if got := strs(tcp["ports"]); !slices.Equal(got, []string{"443", "80"}) && !slices.Equal(got, []string{"80", "443"}) {
		t.Errorf("tcp rule ports = %v", got)
	}
	bs := e.object(t, regional("backendServices", base))
	if bs["protocol"] != "UNSPECIFIED" || bs["sessionAffinity"] != "CLIENT_IP" || bs["loadBalancingScheme"] != "EXTERNAL" {
		t.Errorf("backend service = %v", bs)
	}
	if n := len(bs["backends"].([]any)); n != 2 {
		t.Errorf("backend service has %d backends, want one instance group per zone (2)", n)
	}
	hc := e.object(t, regional("healthChecks", base))
	if port := hc["httpHealthCheck"].(map[string]any)["port"]; fmt.Sprint(port) != "10256" {
		t.Errorf("Cluster-policy health check probes port %v, want kube-proxy's 10256", port)
	}
	traffic := e.object(t, firewall(base))
	if got := strs(traffic["sourceRanges"]); !slices.Equal(got, []string{"198.51.100.0/24"}) {
		t.Errorf("traffic firewall sources = %v", got)
	}
	if got := strs(traffic["destinationRanges"]); !slices.Equal(got, []string{ip + "/32"}) {
		t.Errorf("traffic firewall destinations = %v", got)
	}
	if got := strs(traffic["targetTags"]); !slices.Equal(got, []string{"gke-node"}) {
		t.Errorf("traffic firewall target tags = %v", got)
	}
	probes := e.object(t, firewall(base+"-hc"))
	if got := strs(probes["sourceRanges"]); !slices.Equal(got, []string{"130.211.0.0/22", "209.85.152.0/22", "209.85.204.0/22", "35.191.0.0/16"}) {
		t.Errorf("health-check firewall sources = %v", got)
	}
	if got := e.fake.Members(testRegion+"-a", gcp.InstanceGroupName(testCluster)); !slices.Equal(got, []string{"node-a", "node-c"}) {
		t.Errorf("zone a instance group members = %v", got)
	}
	if st.Backends.Total != 3 || st.Cost.Kind != "gcp-forwarding-rule" || st.Cost.Units["forwardingRules"] != 2 || st.Cost.Tier != "PREMIUM" || st.Cost.Region != testRegion {
		t.Errorf("status = %+v", st)
	}
	// The usage meter reads Cloud Monitoring by the forwarding rules' names.
	var rules []string
	for _, r := range st.Resources {
		if r.Kind == "forwardingRule" {
			rules = append(rules, r.ID[strings.LastIndex(r.ID, "/")+1:])
		}
	}
	if want := "projects/" + testProject + "/regions/" + testRegion + "/forwardingRules/" + strings.Join(rules, ","); len(rules) != 2 || st.Cost.MeterID != want {
		t.Errorf("cost meter id %q, want %q", st.Cost.MeterID, want)
	}
}

func TestFiveRulePortLimit(t *testing.T) {
	tests := []struct {
		name      string
		internal  bool
		ports     []int32
		wantPorts []string
		wantRange string
		wantAll   bool
	}{
		{name: "five ports are listed", ports: []int32{80, 443, 8080, 8443, 9000}, wantPorts: []string{"443", "80", "8080", "8443", "9000"}},
		{name: "six external ports become a range", ports: []int32{80, 443, 8080, 8443, 9000, 9090}, wantRange: "80-9090"},
		{name: "six internal ports become all ports", internal: true, ports: []int32{80, 443, 8080, 8443, 9000, 9090}, wantAll: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{subnet: "nodes"})
			k := key("many")
			d := desired(k, []string{"node-a"}, ports(tc.ports...))
			if tc.internal {
				d.Scheme = providers.SchemeInternal
			}
			st, err := e.p.Ensure(t.Context(), d)
			if err != nil {
				t.Fatal(err)
			}
			r := e.object(t, regional("forwardingRules", gcp.BaseName(k)+"-tcp"))
			var got []string
			if r["ports"] != nil {
				got = strs(r["ports"])
				slices.Sort(got)
			}
			pr, _ := r["portRange"].(string)
			all, _ := r["allPorts"].(bool)
			if !slices.Equal(got, tc.wantPorts) || pr != tc.wantRange || all != tc.wantAll {
				t.Errorf("rule ports=%v portRange=%q allPorts=%v, want %v %q %v", got, pr, all, tc.wantPorts, tc.wantRange, tc.wantAll)
			}
			// The firewall still admits exactly the Service's ports.
			fw := e.object(t, firewall(gcp.BaseName(k)))
			allowed := fw["allowed"].([]any)[0].(map[string]any)
			if n := len(strs(allowed["ports"])); n != len(tc.ports) {
				t.Errorf("firewall admits %d ports, want %d", n, len(tc.ports))
			}
			if len(st.Ports) != len(tc.ports) {
				t.Errorf("status lists %d ports, want %d", len(st.Ports), len(tc.ports))
			}
			obs, err := e.p.Observe(t.Context(), k)
			if err != nil || len(obs.Ports) != len(tc.ports) {
				t.Errorf("Observe ports = %+v, %v", obs, err)
			}
		})
	}
}

func TestInternalLoadBalancer(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := key("internal")
	d := desired(k, []string{"node-a", "node-b"}, ports(80))
	d.Scheme = providers.SchemeInternal
	d.Annotations = map[string]string{gcp.AnnotationSubnet: "backend-subnet"}
	st, err := e.p.Ensure(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	if st.Cost.MeterID != "" {
		t.Errorf("internal load balancer metered as %q; the meter reads external metrics only", st.Cost.MeterID)
	}
	base := gcp.BaseName(k)
	addr := e.object(t, regional("addresses", base))
	if addr["addressType"] != "INTERNAL" || !strings.HasSuffix(addr["subnetwork"].(string), "/subnetworks/backend-subnet") {
		t.Errorf("address = %v", addr)
	}
	if !netip.MustParsePrefix("10.128.0.0/20").Contains(st.Ingress[0].IP) {
		t.Errorf("internal IP %s is not from the subnet range", st.Ingress[0].IP)
	}
	r := e.object(t, regional("forwardingRules", base+"-tcp"))
	if r["loadBalancingScheme"] != "INTERNAL" || r["networkTier"] != nil {
		t.Errorf("internal rule = %v", r)
	}
	if got := strs(e.object(t, firewall(base+"-hc"))["sourceRanges"]); !slices.Equal(got, []string{"130.211.0.0/22", "35.191.0.0/16"}) {
		t.Errorf("internal health-check firewall sources = %v (external-only ranges must be absent)", got)
	}

	// Without a subnet the user must say which.
	d2 := desired(key("no-subnet"), []string{"node-a"}, ports(80))
	d2.Scheme = providers.SchemeInternal
	var ce *providers.ConfigError
	if _, err := e.p.Ensure(t.Context(), d2); !errors.As(err, &ce) || ce.Reason != "SubnetRequired" {
		t.Errorf("internal without subnet: got %v, want ConfigError SubnetRequired", err)
	}
}

func TestNetworkTierAnnotation(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := key("standard")
	d := desired(k, []string{"node-a"}, ports(80))
	d.Annotations = map[string]string{gcp.AnnotationNetworkTier: "standard"}
	st, err := e.p.Ensure(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	base := gcp.BaseName(k)
	if tier := e.object(t, regional("addresses", base))["networkTier"]; tier != "STANDARD" {
		t.Errorf("address tier %v", tier)
	}
	if tier := e.object(t, regional("forwardingRules", base+"-tcp"))["networkTier"]; tier != "STANDARD" {
		t.Errorf("rule tier %v", tier)
	}
	if st.Cost.Tier != "STANDARD" {
		t.Errorf("cost tier %q", st.Cost.Tier)
	}
	// Back to premium: the address cannot change tier, so it is replaced.
	d.Annotations = nil
	st2, err := e.p.Ensure(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	if tier := e.object(t, regional("addresses", base))["networkTier"]; tier != "PREMIUM" {
		t.Errorf("after switching back, address tier %v", tier)
	}
	if st2.Ingress[0].IP == st.Ingress[0].IP {
		t.Log("tier change kept the IP (the fake reused the lowest free address)")
	}
}

func TestStaticAddressIsUsedNotOwned(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.fake.Put("regions/"+testRegion+"/addresses", gcpfake.Object{"name": "my-static", "address": "203.0.113.200", "addressType": "EXTERNAL", "networkTier": "PREMIUM"})
	k := key("static")
	d := desired(k, []string{"node-a"}, ports(80))
	// Start with Portico's own address, then move to the user's.
	if _, err := e.p.Ensure(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	d.Annotations = map[string]string{gcp.AnnotationAddressName: "my-static"}
	st, err := e.p.Ensure(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ingress[0].IP.String() != "203.0.113.200" {
		t.Errorf("ingress %v, want the static address", st.Ingress)
	}
	if e.has(regional("addresses", gcp.BaseName(k))) {
		t.Error("Portico's own address was not released after moving to the static one")
	}
	if err := e.p.Delete(t.Context(), k); err != nil {
		t.Fatal(err)
	}
	if !e.has(regional("addresses", "my-static")) {
		t.Error("Delete released the user's static address")
	}
	d.Annotations = map[string]string{gcp.AnnotationAddressName: "missing"}
	var ce *providers.ConfigError
	if _, err := e.p.Ensure(t.Context(), d); !errors.As(err, &ce) || ce.Reason != "AddressNotFound" {
		t.Errorf("missing static address: got %v, want ConfigError AddressNotFound", err)
	}
}

func TestEphemeralAddressPromotion(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := key("ephemeral")
	d := desired(k, []string{"node-a"}, ports(80))
	d.Annotations = map[string]string{gcp.AnnotationAddressType: "ephemeral"}
	st, err := e.p.Ensure(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	if e.has(regional("addresses", gcp.BaseName(k))) {
		t.Fatal("an ephemeral load balancer reserved an address")
	}
	ip := st.Ingress[0].IP
	if !ip.IsValid() {
		t.Fatalf("no ephemeral IP in status: %+v", st)
	}
	// Promote: the same IP becomes a reserved address Portico owns.
	d.Annotations = map[string]string{gcp.AnnotationAddressType: "reserved"}
	before := e.fake.MutatingCalls()
	st, err = e.p.Ensure(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	addr := e.object(t, regional("addresses", gcp.BaseName(k)))
	if addr["address"] != ip.String() || st.Ingress[0].IP != ip {
		t.Errorf("promotion moved the IP: was %s, address %v, status %v", ip, addr["address"], st.Ingress)
	}
	if n := e.fake.MutatingCalls() - before; n != 2 {
		t.Errorf("promotion made %d mutating calls, want 2 (reserve the address in use, then label it)", n)
	}
	// Back to ephemeral, with a port change that replaces the rule: the
	// reserved address stays, and so does the IP.
	d.Annotations = map[string]string{gcp.AnnotationAddressType: "ephemeral"}
	d.Ports = ports(8080)
	st, err = e.p.Ensure(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ingress[0].IP != ip || !e.has(regional("addresses", gcp.BaseName(k))) {
		t.Errorf("switching back to ephemeral moved the IP to %v or released the address", st.Ingress)
	}
	if r := e.object(t, regional("forwardingRules", gcp.BaseName(k)+"-tcp")); r["IPAddress"] != ip.String() {
		t.Errorf("the replaced rule uses %v, want %s", r["IPAddress"], ip)
	}
	// Mixed protocols cannot share an ephemeral address.
	d.Annotations = map[string]string{gcp.AnnotationAddressType: "ephemeral"}
	d.Ports = append(d.Ports, providers.Port{Name: "dns", Protocol: providers.UDP, Port: 53})
	var ce *providers.ConfigError
	if _, err := e.p.Ensure(t.Context(), d); !errors.As(err, &ce) {
		t.Errorf("ephemeral TCP+UDP: got %v, want ConfigError", err)
	}
}

func TestLocalTrafficPolicyProbesHealthCheckNodePort(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := key("local")
	d := desired(k, []string{"node-a"}, ports(80))
	d.TrafficPolicy = providers.TrafficPolicyLocal
	d.HealthCheckNodePort = 32123
	if _, err := e.p.Ensure(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	base := gcp.BaseName(k)
	hc := e.object(t, regional("healthChecks", base))["httpHealthCheck"].(map[string]any)
	if fmt.Sprint(hc["port"]) != "32123" || hc["requestPath"] != "/healthz" {
		t.Errorf("health check = %v", hc)
	}
	allowed := e.object(t, firewall(base+"-hc"))["allowed"].([]any)[0].(map[string]any)
	if got := strs(allowed["ports"]); !slices.Equal(got, []string{"32123"}) {
		t.Errorf("health-check firewall ports = %v", got)
	}
	// Local narrows nodes: a Local Service only adds to the shared groups.
	other := desired(key("cluster-wide"), []string{"node-a", "node-c"}, ports(81))
	if _, err := e.p.Ensure(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	before := e.fake.MutatingCalls()
	if _, err := e.p.Ensure(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if n := e.fake.MutatingCalls() - before; n != 0 {
		t.Errorf("the Local Service removed the Cluster Service's nodes (%d mutating calls)", n)
	}
	if got := e.fake.Members(testRegion+"-a", gcp.InstanceGroupName(testCluster)); !slices.Equal(got, []string{"node-a", "node-c"}) {
		t.Errorf("members = %v", got)
	}
}

func TestSharedInstanceGroups(t *testing.T) {
	e := newEnv(t, envOptions{})
	nodes := []string{"node-a", "node-b", "node-c"}
	a, b := key("a"), key("b")
	if _, err := e.p.Ensure(t.Context(), desired(a, nodes, ports(80))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Ensure(t.Context(), desired(b, nodes, ports(80))); err != nil {
		t.Fatalf("a second Service on the same nodes: %v (instances may be in one load-balanced group only)", err)
	}
	group := "zones/" + testRegion + "-a/instanceGroups/" + gcp.InstanceGroupName(testCluster)
	count := 0
	for _, r := range e.fake.Resources() {
		if r.Kind == "instanceGroups" {
			count++
		}
	}
	if count != 2 {
		t.Errorf("%d instance groups, want one per zone (2) shared by both Services", count)
	}
	if err := e.p.Delete(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if !e.has(group) {
		t.Fatal("deleting one Service removed the instance group the other still uses")
	}
	if err := e.p.Delete(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if ids := e.ids(); len(ids) != 0 {
		t.Errorf("after deleting every Service the fake still holds %v", ids)
	}
}

func TestNodeChangeTouchesOnlyInstanceGroups(t *testing.T) {
	e := newEnv(t, envOptions{})
	var keys []providers.Key
	for i := range 5 {
		k := key(fmt.Sprintf("svc-%d", i))
		keys = append(keys, k)
		if _, err := e.p.Ensure(t.Context(), desired(k, []string{"node-a", "node-b"}, ports(80))); err != nil {
			t.Fatal(err)
		}
	}
	before := e.fake.MutatingCalls()
	for _, k := range keys {
		st, err := e.p.Ensure(t.Context(), desired(k, []string{"node-a", "node-b", "node-c"}, ports(80)))
		if err != nil {
			t.Fatal(err)
		}
		if st.Backends.Total != 3 {
			t.Errorf("%s: backends %d, want 3", k, st.Backends.Total)
		}
	}
	if n := e.fake.MutatingCalls() - before; n != 1 {
		t.Errorf("adding a node to 5 Services made %d mutating calls, want 1 (one addInstances on the shared group)", n)
	}
}

func TestPaginatedMembership(t *testing.T) {
	e := newEnv(t, envOptions{fake: gcpfake.Options{MaxPageSize: 2}})
	k := key("paged")
	d := desired(k, testNodes, ports(80)) // 4 nodes in zone a, 3 in zone b
	if _, err := e.p.Ensure(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	before := e.fake.MutatingCalls()
	obs, err := e.p.Observe(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	if obs.Backends.Total != len(testNodes) {
		t.Errorf("Observe counted %d backends over 2-item pages, want %d", obs.Backends.Total, len(testNodes))
	}
	if _, err := e.p.Ensure(t.Context(), d); err != nil {
		t.Fatalf("second Ensure: %v (a membership read that stops at the first page re-adds members)", err)
	}
	if n := e.fake.MutatingCalls() - before; n != 0 {
		t.Errorf("second Ensure made %d mutating calls", n)
	}
}

func TestOperationsCompleteLater(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := key("slow")
	if _, err := e.p.Ensure(t.Context(), desired(k, []string{"node-a"}, ports(80))); err != nil {
		t.Fatal(err)
	}
	// Deleting in dependency order only works if each delete operation has
	// finished before the next resource goes: the fake refuses to delete
	// what a live resource still references.
	e.fake.SetOpDelay(100 * time.Millisecond)
	n := len(e.fake.Calls())
	if err := e.p.Delete(t.Context(), k); err != nil {
		t.Fatalf("Delete must wait for each operation before deleting what depends on it: %v", err)
	}
	polls, mutations := 0, 0
	for _, c := range e.fake.Calls()[n:] {
		switch {
		case strings.Contains(c.Path, "/operations/"):
			polls++
		case c.Mutating:
			mutations++
		}
	}
	if polls <= mutations {
		t.Errorf("%d operation polls for %d operations: Delete did not wait for operations to finish", polls, mutations)
	}
	e.fake.Settle()
	if ids := e.ids(); len(ids) != 0 {
		t.Errorf("left behind: %v", ids)
	}
}

func TestDeleteOrder(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := key("order")
	if _, err := e.p.Ensure(t.Context(), desired(k, []string{"node-a"}, append(ports(80), providers.Port{Name: "q", Protocol: providers.UDP, Port: 5353}))); err != nil {
		t.Fatal(err)
	}
	n := len(e.fake.Calls())
	if err := e.p.Delete(t.Context(), k); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, c := range e.fake.Calls()[n:] {
		if c.Method == "DELETE" {
			parts := strings.Split(c.Path, "/")
			order = append(order, parts[len(parts)-2])
		}
	}
	want := []string{"forwardingRules", "forwardingRules", "firewalls", "firewalls", "backendServices", "healthChecks", "addresses", "instanceGroups"}
	if !slices.Equal(order, want) {
		t.Errorf("delete order %v, want %v", order, want)
	}
}

func TestForeignResourcesOfEveryKind(t *testing.T) {
	base := gcp.BaseName(key("foreign"))
	tests := []struct {
		coll string
		obj  gcpfake.Object
	}{
		{"regions/" + testRegion + "/addresses", gcpfake.Object{"name": base, "addressType": "EXTERNAL"}},
		{"regions/" + testRegion + "/healthChecks", gcpfake.Object{"name": base, "type": "TCP"}},
		{"regions/" + testRegion + "/forwardingRules", gcpfake.Object{"name": base + "-tcp", "IPAddress": "203.0.113.9", "description": `{"portico.dev/managed-by":"portico","portico.dev/cluster":"other","portico.dev/service":"default/foreign"}`}},
		{"global/firewalls", gcpfake.Object{"name": base + "-hc", "description": "not json"}},
		{"zones/" + testRegion + "-a/instanceGroups", gcpfake.Object{"name": gcp.InstanceGroupName(testCluster)}},
	}
	for _, tc := range tests {
		t.Run(tc.coll, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			e.fake.Put(tc.coll, tc.obj)
			id := tc.coll + "/" + tc.obj["name"].(string)
			before := e.object(t, id)
			_, err := e.p.Ensure(t.Context(), desired(key("foreign"), []string{"node-a"}, ports(80)))
			var no *providers.NotOwnedError
			if !errors.As(err, &no) {
				t.Fatalf("Ensure over a foreign %s: got %v, want NotOwnedError", tc.coll, err)
			}
			if n := e.fake.MutatingCalls(); n != 0 && !strings.HasSuffix(tc.coll, "/instanceGroups") {
				t.Errorf("Ensure made %d mutating calls before refusing a foreign per-Service resource", n)
			}
			if err := e.p.Delete(t.Context(), key("foreign")); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			e.fake.Settle()
			after := e.object(t, id)
			if fmt.Sprint(before) != fmt.Sprint(after) {
				t.Errorf("the foreign resource changed:\n%v\n%v", before, after)
			}
		})
	}
}

func TestCloudErrorsMapToTheContract(t *testing.T) {
	tests := []struct {
		name  string
		fault gcpfake.Fault
		check func(t *testing.T, err error)
	}{
		{"quota exceeded is a condition the user must act on", gcpfake.Fault{Code: 403, Reason: "quotaExceeded", Times: -1, MutatingOnly: true}, func(t *testing.T, err error) {
			var ce *providers.ConfigError
			if !errors.As(err, &ce) || ce.Reason != gcp.ReasonQuotaExceeded {
				t.Errorf("got %v, want ConfigError QuotaExceeded", err)
			}
		}},
		{"throttling beyond the retry budget is retryable", gcpfake.Fault{Code: 429, Reason: "rateLimitExceeded", Times: -1}, func(t *testing.T, err error) {
			if _, ok := providers.IsRetryable(err); !ok {
				t.Errorf("got %v, want RetryError", err)
			}
		}},
		{"5xx beyond the retry budget is retryable", gcpfake.Fault{Code: 500, Reason: "backendError", Times: -1, MutatingOnly: true}, func(t *testing.T, err error) {
			if _, ok := providers.IsRetryable(err); !ok {
				t.Errorf("got %v, want RetryError", err)
			}
		}},
		{"permission denied is a config error", gcpfake.Fault{Code: 403, Reason: "forbidden", Times: -1}, func(t *testing.T, err error) {
			var ce *providers.ConfigError
			if !errors.As(err, &ce) || ce.Reason != "AccessDenied" {
				t.Errorf("got %v, want ConfigError AccessDenied", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			e.fake.Inject(tc.fault)
			_, err := e.p.Ensure(t.Context(), desired(key("faulty"), []string{"node-a"}, ports(80)))
			if err == nil {
				t.Fatal("Ensure succeeded under a permanent fault")
			}
			tc.check(t, err)
		})
	}
}

func TestThrottlingIsRetriedWithinEnsure(t *testing.T) {
	e := newEnv(t, envOptions{fake: gcpfake.Options{Seed: 7}})
	e.fake.Inject(gcpfake.Fault{Code: 403, Reason: "rateLimitExceeded", Times: -1, Rate: 0.3})
	for i := range 10 {
		if _, err := e.p.Ensure(t.Context(), desired(key(fmt.Sprintf("t%d", i)), []string{"node-a", "node-b"}, ports(80))); err != nil {
			t.Fatalf("Ensure under 30%% throttling: %v", err)
		}
	}
	throttled := 0
	for _, c := range e.fake.Calls() {
		if c.Code == 403 {
			throttled++
		}
	}
	if throttled == 0 {
		t.Fatal("no call was throttled; the fault injection did not fire")
	}
}

func TestDisjointClustersDoNotShareGroups(t *testing.T) {
	e := newEnv(t, envOptions{})
	other, err := gcp.New(e.api, gcp.Options{ClusterID: "other", Project: testProject, Region: testRegion, Network: "default",
		Backoff: gcp.Backoff{Attempts: 2, Initial: time.Millisecond, Max: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Ensure(t.Context(), desired(key("x"), []string{"node-a"}, ports(80))); err != nil {
		t.Fatal(err)
	}
	k := providers.Key{ClusterID: "other", Namespace: "default", Name: "x"}
	_, err = other.Ensure(t.Context(), desired(k, []string{"node-a"}, ports(80)))
	var ce *providers.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("a node already in another cluster's load-balanced group: got %v, want ConfigError", err)
	}
	if gcp.InstanceGroupName("other") == gcp.InstanceGroupName(testCluster) {
		t.Fatal("clusters share instance group names")
	}
}

// TestCrashDuringFirstService complements the conformance crash test (which
// runs in a cluster whose instance groups exist): here the first Service of
// a cluster also creates the shared instance groups, and the operator dies
// after every possible number of mutating calls.
func TestCrashDuringFirstService(t *testing.T) {
	nodes := []string{"node-a", "node-b", "node-c"}
	d := desired(key("first"), nodes, append(ports(80), providers.Port{Name: "dns", Protocol: providers.UDP, Port: 53}))
	clean := newEnv(t, envOptions{})
	if _, err := clean.p.Ensure(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	steps := clean.fake.MutatingCalls()
	want := kinds(clean.fake.Resources())
	for n := range steps {
		e := newEnv(t, envOptions{})
		e.fake.CrashAfter(n)
		if _, err := e.p.Ensure(t.Context(), d); err == nil {
			t.Fatalf("crash after %d of %d steps: Ensure succeeded", n, steps)
		}
		e.fake.ClearFaults()
		st, err := e.p.Ensure(t.Context(), d)
		if err != nil {
			t.Fatalf("crash after %d steps: recovery: %v", n, err)
		}
		if got := kinds(e.fake.Resources()); got != want {
			t.Errorf("crash after %d steps: %s, want %s", n, got, want)
		}
		if st.Backends.Total != len(nodes) {
			t.Errorf("crash after %d steps: %d backends", n, st.Backends.Total)
		}
		if err := e.p.Delete(t.Context(), d.Key); err != nil {
			t.Fatal(err)
		}
		if ids := e.ids(); len(ids) != 0 {
			t.Errorf("crash after %d steps: Delete left %v", n, ids)
		}
	}
}

func kinds(rs []gcpfake.Resource) string {
	count := map[string]int{}
	for _, r := range rs {
		count[r.Kind]++
	}
	return fmt.Sprint(count)
}

func TestBackendHealthInStatus(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := key("health")
	d := desired(k, []string{"node-a", "node-b", "node-c"}, ports(80))
	e.fake.SetHealth(zoneOf("node-c"), "node-c", "UNHEALTHY")
	st, err := e.p.Ensure(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	if st.Backends != (providers.Backends{Total: 3, Healthy: 2}) {
		t.Errorf("Ensure backends %+v, want 2 of 3 healthy", st.Backends)
	}
	e.fake.SetHealth(zoneOf("node-c"), "node-c", "HEALTHY")
	e.fake.SetHealth(zoneOf("node-b"), "node-b", "UNKNOWN")
	obs, err := e.p.Observe(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	if obs.Backends != (providers.Backends{Total: 3, Healthy: 2}) {
		t.Errorf("Observe backends %+v, want 2 of 3 healthy", obs.Backends)
	}
}

// TestClusterIDsNeedNoCare checks that every cluster ID the provider
// accepts yields names and labels the API accepts (the fake validates both as
// Compute Engine does), and that the provider refuses, at start, IDs that
// could not be a GCP label value (providers.ValidateClusterID).
func TestClusterIDsNeedNoCare(t *testing.T) {
	for _, cluster := range []string{"1-starts-with-digit", strings.Repeat("x", 63), providers.DeriveClusterID("uid")} {
		e := newEnv(t, envOptions{cluster: cluster})
		k := providers.Key{ClusterID: cluster, Namespace: "default", Name: "svc"}
		if _, err := e.p.Ensure(t.Context(), desired(k, []string{"node-a"}, ports(80))); err != nil {
			t.Errorf("cluster %q: %v", cluster, err)
		}
	}
	for _, cluster := range []string{"", "Prod/EU West 1", strings.Repeat("x", 64), "ünïcode"} {
		if _, err := gcp.New(nil, gcp.Options{ClusterID: cluster, Project: testProject, Region: testRegion, Network: "default"}); err == nil {
			t.Errorf("cluster %q: accepted", cluster)
		}
	}
}

// TestLabelsAreSetAfterInsert: addresses and forwarding rules ignore labels
// sent at insert (the fake does as the API does), so Portico sets them with
// setLabels once the resource exists, and an unchanged resync sets nothing.
func TestLabelsAreSetAfterInsert(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := key("labels")
	d := desired(k, []string{"node-a"}, append(ports(80), providers.Port{Name: "dns", Protocol: providers.UDP, Port: 53}))
	if _, err := e.p.Ensure(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	base := gcp.BaseName(k)
	for _, id := range []string{regional("addresses", base), regional("forwardingRules", base+"-tcp"), regional("forwardingRules", base+"-udp")} {
		l, _ := e.object(t, id)["labels"].(map[string]any)
		if l["portico-managed-by"] != "portico" || l["portico-cluster"] != testCluster || l["portico-service"] == nil {
			t.Errorf("%s labels = %v", id, l)
		}
	}
	before := e.fake.MutatingCalls()
	if _, err := e.p.Ensure(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if n := e.fake.MutatingCalls() - before; n != 0 {
		t.Errorf("an unchanged resync made %d mutating calls", n)
	}
}

// TestProtocolChangeOrder: the backend service's protocol cannot change while
// a forwarding rule references it, so a Service whose protocols change must
// have its rules deleted before the backend service is patched (as
// cloud-provider-gcp does), not be stuck retrying the patch.
func TestProtocolChangeOrder(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := key("proto")
	udp := providers.Port{Name: "dns", Protocol: providers.UDP, Port: 53}
	steps := []struct {
		name  string
		ports []providers.Port
		bs    string
	}{
		{"tcp", ports(80), "TCP"},
		{"tcp and udp", append(ports(80), udp), "UNSPECIFIED"},
		{"udp", []providers.Port{udp}, "UDP"},
		{"tcp again", ports(80), "TCP"},
	}
	var ip string
	for _, step := range steps {
		st, err := e.p.Ensure(t.Context(), desired(k, []string{"node-a"}, step.ports))
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := e.object(t, regional("backendServices", gcp.BaseName(k)))["protocol"]; got != step.bs {
			t.Errorf("%s: backend service protocol %v, want %s", step.name, got, step.bs)
		}
		if ip != "" && st.Ingress[0].IP.String() != ip {
			t.Errorf("%s: the IP moved from %s to %s", step.name, ip, st.Ingress[0].IP)
		}
		ip = st.Ingress[0].IP.String()
	}
}

// TestInternalTCPAndUDPShareAnAddress: an internal Service with TCP and UDP
// ports gets two forwarding rules on one address, which the API allows only
// for an address reserved with purpose SHARED_LOADBALANCER_VIP.
func TestInternalTCPAndUDPShareAnAddress(t *testing.T) {
	e := newEnv(t, envOptions{subnet: "backend-subnet"})
	k := key("internal-mixed")
	d := desired(k, []string{"node-a", "node-b"}, append(ports(80), providers.Port{Name: "dns", Protocol: providers.UDP, Port: 53}))
	d.Scheme = providers.SchemeInternal
	st, err := e.p.Ensure(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	base := gcp.BaseName(k)
	if p := e.object(t, regional("addresses", base))["purpose"]; p != "SHARED_LOADBALANCER_VIP" {
		t.Errorf("internal address purpose %v, want SHARED_LOADBALANCER_VIP", p)
	}
	for _, proto := range []string{"tcp", "udp"} {
		if r := e.object(t, regional("forwardingRules", base+"-"+proto)); r["IPAddress"] != st.Ingress[0].IP.String() {
			t.Errorf("%s rule on %v, want %s", proto, r["IPAddress"], st.Ingress[0].IP)
		}
	}
}

// TestExternalAddressByNumber: Compute Engine picks external IPs; one can be
// reserved by number only to promote an ephemeral IP in use. lb.portico.dev/ip
// on an external Service therefore uses an address already reserved in the
// region (the user's, never changed or released) or is a clear ConfigError.
func TestExternalAddressByNumber(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.fake.Put("regions/"+testRegion+"/addresses", gcpfake.Object{"name": "users-static", "addressType": "EXTERNAL", "networkTier": "PREMIUM", "address": "203.0.113.77"})

	free := desired(key("free-ip"), []string{"node-a"}, ports(80))
	free.RequestedIPs = []netip.Addr{netip.MustParseAddr("203.0.113.50")}
	_, err := e.p.Ensure(t.Context(), free)
	var ce *providers.ConfigError
	if !errors.As(err, &ce) || ce.Reason != "AddressNotReserved" {
		t.Fatalf("an unreserved external IP: got %v, want ConfigError AddressNotReserved", err)
	}

	k := key("reserved-ip")
	d := desired(k, []string{"node-a"}, ports(80))
	d.RequestedIPs = []netip.Addr{netip.MustParseAddr("203.0.113.77")}
	st, err := e.p.Ensure(t.Context(), d)
	if err != nil {
		t.Fatalf("the user's reserved IP: %v", err)
	}
	if st.Ingress[0].IP.String() != "203.0.113.77" || e.has(regional("addresses", gcp.BaseName(k))) {
		t.Errorf("status %v; Portico must use the user's address, not reserve its own", st.Ingress)
	}
	if err := e.p.Delete(t.Context(), k); err != nil {
		t.Fatal(err)
	}
	if !e.has(regional("addresses", "users-static")) {
		t.Error("Delete released the user's address")
	}
}

// plantGKEGroup makes the world of a GKE cluster that runs instance-group
// load balancers or Ingress: a k8s-ig--<uid> group in zone a holding every
// node of that zone, used by one of GKE's backend services.
func plantGKEGroup(e *env, nodes ...string) string {
	zone := testRegion + "-a"
	e.fake.Put("zones/"+zone+"/instanceGroups", gcpfake.Object{"name": "k8s-ig--0123456789abcdef", "description": "created by GKE"})
	e.fake.PutMembers(zone, "k8s-ig--0123456789abcdef", nodes...)
	link := "projects/" + testProject + "/zones/" + zone + "/instanceGroups/k8s-ig--0123456789abcdef"
	e.fake.Put("regions/"+testRegion+"/backendServices", gcpfake.Object{"name": "k8s-be-30001--0123456789abcdef", "loadBalancingScheme": "EXTERNAL", "protocol": "TCP",
		"backends": []any{map[string]any{"group": link}}})
	return link
}

// TestGKEInstanceGroupsAreReused: an instance may be in only one
// load-balanced instance group, and GKE keeps every node in its k8s-ig--
// group. Portico uses that group as a backend (unchanged) and keeps those
// nodes out of its own, as cloud-provider-gcp does with its external
// instance groups.
func TestGKEInstanceGroupsAreReused(t *testing.T) {
	e := newEnv(t, envOptions{})
	gke := plantGKEGroup(e, "node-a", "node-c")
	k := key("on-gke")
	d := desired(k, []string{"node-a", "node-b", "node-c"}, ports(80))
	st, err := e.p.Ensure(t.Context(), d)
	if err != nil {
		t.Fatalf("Ensure on nodes in GKE's instance group: %v", err)
	}
	var backends []string
	for _, b := range e.object(t, regional("backendServices", gcp.BaseName(k)))["backends"].([]any) {
		backends = append(backends, b.(map[string]any)["group"].(string))
	}
	own := "projects/" + testProject + "/zones/" + testRegion + "-b/instanceGroups/" + gcp.InstanceGroupName(testCluster)
	if len(backends) != 2 || !slices.ContainsFunc(backends, func(b string) bool { return strings.HasSuffix(b, gke) }) ||
		!slices.ContainsFunc(backends, func(b string) bool { return strings.HasSuffix(b, own) }) {
		t.Errorf("backends %v, want GKE's group in zone a and Portico's in zone b", backends)
	}
	if e.has("zones/" + testRegion + "-a/instanceGroups/" + gcp.InstanceGroupName(testCluster)) {
		t.Error("Portico created its own group in a zone GKE's group covers")
	}
	if got := e.fake.Members(testRegion+"-a", "k8s-ig--0123456789abcdef"); !slices.Equal(got, []string{"node-a", "node-c"}) {
		t.Errorf("GKE's group changed: %v", got)
	}
	if st.Backends.Total != 3 {
		t.Errorf("backends total %d, want 3", st.Backends.Total)
	}
	if err := e.p.Delete(t.Context(), k); err != nil {
		t.Fatal(err)
	}
	if !e.has("zones/"+testRegion+"-a/instanceGroups/k8s-ig--0123456789abcdef") || len(e.fake.Members(testRegion+"-a", "k8s-ig--0123456789abcdef")) != 2 {
		t.Error("Delete touched GKE's group")
	}

	// GKE's group holds a node this Service excludes: with policy Cluster
	// that is a clear condition, not a Compute Engine error.
	d2 := desired(key("excluding"), []string{"node-a"}, ports(80))
	_, err = e.p.Ensure(t.Context(), d2)
	var ce *providers.ConfigError
	if !errors.As(err, &ce) || ce.Reason != gcp.ReasonInstanceGroupConflict || !strings.Contains(ce.Message, "k8s-ig--0123456789abcdef") {
		t.Errorf("got %v, want ConfigError InstanceGroupConflict naming GKE's group", err)
	}
}

// TestUnsupportedNeutralAnnotations: what the gcp backend cannot honour is a
// clear condition before any API call, never silently ignored.
func TestUnsupportedNeutralAnnotations(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(d *providers.LoadBalancer)
		reason string
	}{
		{"an IPv6 next to the IPv4", func(d *providers.LoadBalancer) {
			d.RequestedIPs = []netip.Addr{netip.MustParseAddr("10.128.0.9"), netip.MustParseAddr("fd00::9")}
			d.Scheme = providers.SchemeInternal
		}, "IPv6Unsupported"},
		{"allow-shared-ip", func(d *providers.LoadBalancer) { d.SharingKey = "team-a" }, "SharingUnsupported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{subnet: "backend-subnet"})
			d := desired(key("unsupported"), []string{"node-a"}, ports(80))
			tc.mutate(d)
			_, err := e.p.Ensure(t.Context(), d)
			var ce *providers.ConfigError
			if !errors.As(err, &ce) || ce.Reason != tc.reason {
				t.Fatalf("got %v, want ConfigError %s", err, tc.reason)
			}
			if n := e.fake.MutatingCalls(); n != 0 {
				t.Errorf("%d mutating calls before refusing", n)
			}
		})
	}
}

// TestInterruptedDeleteLeavesNothing: Delete dies after every possible number
// of mutating calls and is retried: the retry leaves no forwarding rule,
// firewall, backend service, health check, address or instance group behind.
func TestInterruptedDeleteLeavesNothing(t *testing.T) {
	nodes := []string{"node-a", "node-b"}
	d := desired(key("interrupted"), nodes, append(ports(80), providers.Port{Name: "dns", Protocol: providers.UDP, Port: 53}))
	d.SourceRanges = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")} // the deny firewall too
	clean := newEnv(t, envOptions{})
	if _, err := clean.p.Ensure(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	before := clean.fake.MutatingCalls()
	if err := clean.p.Delete(t.Context(), d.Key); err != nil {
		t.Fatal(err)
	}
	steps := clean.fake.MutatingCalls() - before
	if steps < 10 {
		t.Fatalf("a full delete took %d mutating calls; expected rules, firewalls, backend service, health check, address and groups", steps)
	}
	for n := range steps {
		e := newEnv(t, envOptions{})
		if _, err := e.p.Ensure(t.Context(), d); err != nil {
			t.Fatal(err)
		}
		e.fake.CrashAfter(n)
		if err := e.p.Delete(t.Context(), d.Key); err == nil {
			t.Fatalf("crash after %d of %d delete steps: Delete succeeded", n, steps)
		}
		e.fake.ClearFaults()
		if err := e.p.Delete(t.Context(), d.Key); err != nil {
			t.Fatalf("crash after %d delete steps: retried Delete: %v", n, err)
		}
		e.fake.Settle()
		if ids := e.ids(); len(ids) != 0 {
			t.Errorf("crash after %d of %d delete steps: left %v", n, steps, ids)
		}
	}
}

// TestBackendsStartUnhealthy: on Compute Engine a backend is healthy only
// after its health checks pass. Ensure must succeed with an address while no
// backend is healthy yet, and report them healthy once they are.
func TestBackendsStartUnhealthy(t *testing.T) {
	e := newEnv(t, envOptions{fake: gcpfake.Options{HealthyAfter: 500 * time.Millisecond}})
	k := key("warming")
	st, err := e.p.Ensure(t.Context(), desired(k, []string{"node-a", "node-b"}, ports(80)))
	if err != nil {
		t.Fatalf("Ensure while no backend is healthy yet: %v", err)
	}
	if len(st.Ingress) != 1 || st.Backends != (providers.Backends{Total: 2, Healthy: 0}) {
		t.Fatalf("status %+v, want an address and 0 of 2 healthy", st)
	}
	time.Sleep(600 * time.Millisecond)
	obs, err := e.p.Observe(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	if obs.Backends != (providers.Backends{Total: 2, Healthy: 2}) {
		t.Errorf("after the health checks pass: %+v, want 2 of 2", obs.Backends)
	}
}

// TestForwardingRuleQuota: a project out of forwarding rules fails the
// insert's operation with QUOTA_EXCEEDED; the Service's condition names the
// quota, and deleting another Service frees it.
func TestForwardingRuleQuota(t *testing.T) {
	e := newEnv(t, envOptions{fake: gcpfake.Options{Quotas: map[string]int{"forwardingRules": 1}}})
	if _, err := e.p.Ensure(t.Context(), desired(key("first"), []string{"node-a"}, ports(80))); err != nil {
		t.Fatal(err)
	}
	second := desired(key("second"), []string{"node-a"}, ports(81))
	_, err := e.p.Ensure(t.Context(), second)
	var ce *providers.ConfigError
	if !errors.As(err, &ce) || ce.Reason != gcp.ReasonQuotaExceeded || !strings.Contains(ce.Message, "forwarding_rules") || !strings.Contains(ce.Message, "FORWARDING_RULES") {
		t.Fatalf("got %v, want ConfigError QuotaExceeded naming the forwarding rule quota", err)
	}
	if err := e.p.Delete(t.Context(), key("first")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Ensure(t.Context(), second); err != nil {
		t.Fatalf("after a rule was freed: %v", err)
	}
}
