package azure

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/azure/azurefake"
	"github.com/portico-lb/portico/providers/providertest"
)

// callerCredential signs requests with a token naming its caller, which the
// fake records with every call.
type callerCredential string

func (c callerCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(c), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// clusterProvider is one cluster's provider on srv, in the shared resource
// group and NSG, signing as the cluster.
func clusterProvider(t *testing.T, srv *azurefake.Server, id string, mutate ...func(*Options)) *Provider {
	t.Helper()
	cfg, err := CloudConfiguration("AzurePublic", srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		ClusterID: id, SubscriptionID: testSub, ResourceGroup: testRG, Location: testLocation,
		VNetName: "aks-vnet", SubnetName: "aks-subnet", SecurityGroupName: testNSG,
		PollInterval: time.Millisecond, Credential: callerCredential(id),
		ClientOptions: &arm.ClientOptions{ClientOptions: policy.ClientOptions{
			Cloud: cfg, Transport: srv.Client(),
			Retry: policy.RetryOptions{MaxRetries: 2, RetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Millisecond},
		}},
	}
	for _, m := range mutate {
		m(&o)
	}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// clusterDesired is web in namespace default of cluster id, on that
// cluster's own nodes (first octet block per cluster).
func clusterDesired(id string, block byte, nodes int, ports ...providers.Port) *providers.LoadBalancer {
	var names []string
	for i := range nodes {
		names = append(names, id+"-node-"+string(rune('a'+i)))
	}
	d := providertest.DefaultDesired(providers.Key{ClusterID: id, Namespace: "default", Name: "web", UID: "uid-web-" + id}, names, ports)
	for i := range d.Nodes {
		d.Nodes[i].InternalIPs = []netip.Addr{netip.AddrFrom4([4]byte{10, block, 0, byte(10 + i)})}
	}
	return d
}

func retrying(f func() error) error { return providertest.RetryTransient(50, 5*time.Millisecond, f) }

// TestTwoClustersOneResourceGroup: two clusters with their own cluster IDs
// share a resource group and the nodes' NSG and serve a Service of the same
// namespace and name. Concurrent creates, updates and a delete in one never
// write or delete the other's shared load balancer, public IP or NSG rules
// (the fake's call log, signed per cluster, proves it), and after alpha
// deletes its Service bravo's load balancer and rules are intact.
func TestTwoClustersOneResourceGroup(t *testing.T) {
	srv := azurefake.New(azurefake.Options{})
	t.Cleanup(srv.Close)
	nsgID := srv.AddSecurityGroup(testSub, testRG, testNSG)
	alpha, bravo := providers.DeriveClusterID("alpha-kube-system-uid"), providers.DeriveClusterID("bravo-kube-system-uid")
	ps := map[string]*Provider{alpha: clusterProvider(t, srv, alpha), bravo: clusterProvider(t, srv, bravo)}
	blocks := map[string]byte{alpha: 1, bravo: 2}
	ranges := []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	ctx := t.Context()

	both := func(step func(id string) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := map[string]error{}
		var mu sync.Mutex
		for id := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := retrying(func() error { return step(id) })
				mu.Lock()
				errs[id] = err
				mu.Unlock()
			}()
		}
		wg.Wait()
		if err := errors.Join(errs[alpha], errs[bravo]); err != nil {
			t.Fatal(err)
		}
	}
	both(func(id string) error {
		_, err := ps[id].Ensure(ctx, clusterDesired(id, blocks[id], 1, providertest.TCP(80, 30080)))
		return err
	})
	both(func(id string) error {
		d := clusterDesired(id, blocks[id], 2, providertest.TCP(80, 30080), providertest.TCP(443, 30443))
		d.SourceRanges = ranges
		_, err := ps[id].Ensure(ctx, d)
		return err
	})
	bravoKey := clusterDesired(bravo, 2, 1).Key
	bravoBefore, err := ps[bravo].Observe(ctx, bravoKey)
	if err != nil {
		t.Fatal(err)
	}
	bravoRules := map[string]*armnetwork.SecurityRule{}
	for _, name := range securityRuleNames(ResourceName(bravoKey)) {
		if r := srv.SecurityRule(ps[bravo].securityRuleID(name)); r != nil {
			bravoRules[name] = r
		}
	}
	if len(bravoRules) != 3 {
		t.Fatalf("bravo has rules %v, want allow, probe and deny", bravoRules)
	}

	var wg sync.WaitGroup
	var delErr, ensErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		delErr = retrying(func() error { return ps[alpha].Delete(ctx, clusterDesired(alpha, 1, 1).Key) })
	}()
	go func() {
		defer wg.Done()
		d := clusterDesired(bravo, 2, 2, providertest.TCP(80, 30080), providertest.TCP(443, 30443))
		d.SourceRanges = ranges
		ensErr = retrying(func() error { _, err := ps[bravo].Ensure(ctx, d); return err })
	}()
	wg.Wait()
	if err := errors.Join(delErr, ensErr); err != nil {
		t.Fatal(err)
	}

	after, err := ps[bravo].Observe(ctx, bravoKey)
	if err != nil || len(after.Ingress) == 0 || after.Ingress[0].IP != bravoBefore.Ingress[0].IP {
		t.Fatalf("bravo's load balancer after alpha's delete: %+v, %v (was %+v)", after, err, bravoBefore)
	}
	for name := range bravoRules {
		if srv.SecurityRule(ps[bravo].securityRuleID(name)) == nil {
			t.Errorf("bravo's NSG rule %s is gone after alpha deleted its Service", name)
		}
	}
	if _, err := ps[alpha].Observe(ctx, clusterDesired(alpha, 1, 1).Key); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("alpha's load balancer after its delete: %v", err)
	}

	// The call log: no write or delete signed by one cluster addresses a
	// resource named for the other (its shared load balancer, its Service's
	// public IP and NSG rules).
	names := func(id string) []string {
		k := clusterDesired(id, 0, 1).Key
		pub, in := ps[id].LoadBalancerNames()
		return []string{"/loadbalancers/" + strings.ToLower(pub), "/loadbalancers/" + strings.ToLower(in), "/" + strings.ToLower(ResourceName(k))}
	}
	other := map[string]string{alpha: bravo, bravo: alpha}
	for _, c := range srv.Calls() {
		if !c.Mutating {
			continue
		}
		victim, ok := other[c.Caller]
		if !ok {
			t.Fatalf("call %s %s by unknown caller %q", c.Method, c.Path, c.Caller)
		}
		path := strings.ToLower(c.Path)
		for _, n := range names(victim) {
			if strings.HasSuffix(path, n) || strings.Contains(path, n+"/") || strings.Contains(path, n+"-") {
				t.Errorf("%s %s by %s addresses %s's resource", c.Method, c.Path, c.Caller, victim)
			}
		}
	}
	_ = nsgID
}

// TestSourceRangesWithoutNSGFailClosed: without a network security group
// Portico cannot enforce loadBalancerSourceRanges; Ensure returns a
// SourceRangesNotEnforceable ConfigError and creates nothing, instead of a
// Ready load balancer open to everyone.
func TestSourceRangesWithoutNSGFailClosed(t *testing.T) {
	e := newEnv(t, envOptions{noNSG: true})
	d := desired("ranged")
	d.SourceRanges = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	before := e.srv.Stats().Mutating
	_, err := e.p.Ensure(t.Context(), d)
	var ce *providers.ConfigError
	if !errors.As(err, &ce) || ce.Reason != providers.ReasonSourceRangesNotEnforceable {
		t.Fatalf("Ensure = %v, want ConfigError %s", err, providers.ReasonSourceRangesNotEnforceable)
	}
	if n := e.srv.Stats().Mutating - before; n != 0 {
		t.Errorf("%d mutating calls for a load balancer whose ranges cannot be enforced", n)
	}
	// Without ranges the Service asks for everyone, which needs no NSG.
	ensure(t, e.p, desired("open"))
}

// TestSourceRangesDenyEveryoneElse evaluates the NSG as Azure does (custom
// rules by priority, then the default rules): a client outside the ranges
// is denied for external and internal load balancers alike (for an internal
// one the default AllowVnetInBound used to admit the whole VNet), a client
// inside them and the health probe are admitted, and no rule reaches a
// node that is not the Service's backend.
func TestSourceRangesDenyEveryoneElse(t *testing.T) {
	for _, scheme := range []providers.Scheme{providers.SchemeExternal, providers.SchemeInternal} {
		t.Run(string(scheme), func(t *testing.T) {
			e := newEnv(t, envOptions{})
			nsgID := armID(testSub, testRG, "networkSecurityGroups", testNSG)
			d := desired("web") // nodes 10.0.0.10 and 10.0.0.11, node port 30080
			d.Scheme = scheme
			d.SourceRanges = []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}
			ensure(t, e.p, d)
			// The deny rule exists before the frontend does: no moment admits
			// the VNet to a new frontend.
			denyAt, lbAt := -1, -1
			for i, c := range e.srv.Calls() {
				switch {
				case c.Method != "PUT":
				case denyAt < 0 && strings.HasSuffix(strings.ToLower(c.Path), "/securityrules/"+strings.ToLower(ResourceName(d.Key))+denyRuleSuffix):
					denyAt = i
				case lbAt < 0 && strings.Contains(strings.ToLower(c.Path), "/loadbalancers/"):
					lbAt = i
				}
			}
			if denyAt < 0 || lbAt < 0 || denyAt > lbAt {
				t.Errorf("deny rule written at call %d, load balancer at %d: want the rule first", denyAt, lbAt)
			}
			node := netip.MustParseAddr("10.0.0.10")
			vnet := []string{"VirtualNetwork"}
			for _, tc := range []struct {
				name string
				pkt  azurefake.Packet
				want armnetwork.SecurityRuleAccess
			}{
				{"client in the ranges", azurefake.Packet{Source: netip.MustParseAddr("10.9.1.1"), SourceTags: vnet, Destination: node, DestinationTags: vnet, Protocol: "Tcp", Port: 30080}, armnetwork.SecurityRuleAccessAllow},
				{"VNet client outside the ranges", azurefake.Packet{Source: netip.MustParseAddr("10.7.1.1"), SourceTags: vnet, Destination: node, DestinationTags: vnet, Protocol: "Tcp", Port: 30080}, armnetwork.SecurityRuleAccessDeny},
				{"internet client", azurefake.Packet{Source: netip.MustParseAddr("198.51.100.1"), SourceTags: []string{"Internet"}, Destination: node, DestinationTags: vnet, Protocol: "Tcp", Port: 30080}, armnetwork.SecurityRuleAccessDeny},
				{"health probe", azurefake.Packet{Source: netip.MustParseAddr("168.63.129.16"), SourceTags: []string{"AzureLoadBalancer"}, Destination: node, DestinationTags: vnet, Protocol: "Tcp", Port: kubeProxyHealthPort}, armnetwork.SecurityRuleAccessAllow},
			} {
				if got, rule := e.srv.EvaluateInbound(nsgID, tc.pkt); got != tc.want {
					t.Errorf("%s: %s by rule %q, want %s", tc.name, got, rule, tc.want)
				}
			}
			// The allow rule reaches only the Service's backends, never the
			// VirtualNetwork tag.
			allow := e.srv.SecurityRule(e.p.securityRuleID(ResourceName(d.Key)))
			if got := deref(allow.Properties.DestinationAddressPrefix); got != "" {
				t.Errorf("allow rule destination = %q, want the backends' addresses", got)
			}
			if got := strings.Join(fromPtrSlice(allow.Properties.DestinationAddressPrefixes), ","); got != "10.0.0.10,10.0.0.11" {
				t.Errorf("allow rule destinations = %s", got)
			}
			other := azurefake.Packet{Source: netip.MustParseAddr("10.9.1.1"), SourceTags: vnet, Destination: netip.MustParseAddr("10.0.0.99"), DestinationTags: vnet, Protocol: "Tcp", Port: 30080}
			if _, rule := e.srv.EvaluateInbound(nsgID, other); strings.HasPrefix(rule, ResourceName(d.Key)) {
				t.Errorf("rule %s of the Service decides traffic to a node that is not its backend", rule)
			}
			// Dropping the ranges removes the deny and probe rules.
			d.SourceRanges = nil
			ensure(t, e.p, d)
			for _, suffix := range []string{denyRuleSuffix, probeRuleSuffix} {
				if r := e.srv.SecurityRule(e.p.securityRuleID(ResourceName(d.Key) + suffix)); r != nil {
					t.Errorf("rule %s left after the ranges were removed", suffix)
				}
			}
		})
	}
}

// TestPublicIPPrefixAllowList: a Service may name a public IP prefix only in
// the operator's resource group or one listed in
// --azure-allowed-resource-groups; anything else is a ResourceNotAllowed
// ConfigError with no write.
func TestPublicIPPrefixAllowList(t *testing.T) {
	prefixIn := func(sub, rg string) string {
		return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.Network/publicIPPrefixes/shared"
	}
	const otherSub = "00000000-0000-0000-0000-000000000002"
	for _, tc := range []struct {
		name    string
		prefix  string
		allowed []string
		ok      bool
	}{
		{name: "by name, own group", prefix: "shared", ok: true},
		{name: "own group by ID", prefix: prefixIn(testSub, strings.ToUpper(testRG)), ok: true},
		{name: "another group", prefix: prefixIn(testSub, "team-b")},
		{name: "another group, allowed", prefix: prefixIn(testSub, "team-b"), allowed: []string{"team-b"}, ok: true},
		{name: "same group name in another subscription", prefix: prefixIn(otherSub, "team-b"), allowed: []string{"team-b"}},
		{name: "another subscription, allowed by ID", prefix: prefixIn(otherSub, "team-b"), allowed: []string{"/subscriptions/" + otherSub + "/resourceGroups/team-b"}, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := azurefake.New(azurefake.Options{})
			t.Cleanup(srv.Close)
			srv.AddSecurityGroup(testSub, testRG, testNSG)
			p := clusterProvider(t, srv, testCluster, func(o *Options) { o.AllowedResourceGroups = tc.allowed })
			d := withAnnotations(desired("web"), AnnotationPublicIPPrefix, tc.prefix)
			_, err := p.Ensure(t.Context(), d)
			if tc.ok {
				if err != nil {
					t.Fatalf("Ensure: %v", err)
				}
				return
			}
			var ce *providers.ConfigError
			if !errors.As(err, &ce) || ce.Reason != providers.ReasonResourceNotAllowed {
				t.Fatalf("Ensure = %v, want ConfigError %s", err, providers.ReasonResourceNotAllowed)
			}
			if n := srv.Stats().Mutating; n != 0 {
				t.Errorf("%d writes for a prefix outside the allowed resource groups", n)
			}
		})
	}
}
