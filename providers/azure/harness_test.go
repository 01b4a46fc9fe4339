package azure

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/azure/azurefake"
	"github.com/portico-lb/portico/providers/providertest"
)

// Fixed names of the test environment.
const (
	testSub      = "00000000-0000-0000-0000-000000000001"
	testRG       = "mc_portico_test"
	testNSG      = "aks-agentpool-nsg"
	testCluster  = "conformance"
	testLocation = "westeurope"
)

// fakeCredential hands out a fixed token; the fake does not check it.
type fakeCredential struct{}

func (fakeCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "fake-token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

type envOptions struct {
	latency     time.Duration
	batchWindow time.Duration
	noNSG       bool
	noVNet      bool
	pageSize    int
	// outboundSNAT lets public rules provide outbound SNAT.
	outboundSNAT bool
	// limits lowers the fake's Azure limits.
	limits azurefake.Limits
}

// env is a fake ARM endpoint and a provider whose real SDK clients talk to
// it over TLS through cloud.Configuration.
type env struct {
	srv *azurefake.Server
	p   *Provider
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	srv := azurefake.New(azurefake.Options{OperationLatency: o.latency, PageSize: o.pageSize, Limits: o.limits})
	t.Cleanup(srv.Close)
	srv.AddSecurityGroup(testSub, testRG, testNSG)
	e := &env{srv: srv}
	e.p = e.provider(t, o)
	return e
}

// provider builds another provider (another writer) on the same fake.
func (e *env) provider(t testing.TB, o envOptions) *Provider {
	t.Helper()
	cfg, err := CloudConfiguration("AzurePublic", e.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		ClusterID:      testCluster,
		SubscriptionID: testSub,
		ResourceGroup:  testRG,
		Location:       testLocation,
		VNetName:       "aks-vnet",
		SubnetName:     "aks-subnet",
		BatchWindow:    o.batchWindow,
		OutboundSNAT:   o.outboundSNAT,
		PollInterval:   time.Millisecond,
		Credential:     fakeCredential{},
		ClientOptions: &arm.ClientOptions{ClientOptions: policy.ClientOptions{
			Cloud:     cfg,
			Transport: e.srv.Client(),
			Retry:     policy.RetryOptions{MaxRetries: 2, RetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Millisecond},
		}},
	}
	if !o.noNSG {
		opts.SecurityGroupName = testNSG
	}
	if o.noVNet {
		opts.VNetName, opts.SubnetName = "", ""
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// resources converts the fake's objects for the conformance suite. The
// cluster's NSG is infrastructure Portico never creates, so it is left out.
func (e *env) resources() []providertest.Resource {
	var out []providertest.Resource
	for _, r := range e.srv.Resources() {
		switch r.Kind {
		case azurefake.KindSecurityGroup:
			continue
		case azurefake.KindSecurityRule:
			if rule := e.srv.SecurityRule(r.ID); rule != nil && rule.Properties != nil {
				r.Tags = descriptionMarks(deref(rule.Properties.Description))
			}
		default:
			// The conformance suite speaks the logical marks.
			r.Tags = tagMarks(toPtrMap(r.Tags))
		}
		out = append(out, providertest.Resource{Kind: r.Kind, ID: r.ID, Tags: r.Tags})
	}
	return out
}

// owned is the ownership rule the provider itself applies: public IPs by
// tags, NSG rules by description marks, load balancer children by name in a
// load balancer tagged for the cluster. The shared load balancer itself is
// no single Service's.
func owned(r providertest.Resource, key providers.Key) bool {
	kind, name := r.Kind, nameFromID(r.ID)
	switch kind {
	case azurefake.KindLoadBalancer:
		return false
	case azurefake.KindFrontend, azurefake.KindRule, azurefake.KindProbe, azurefake.KindBackendPool:
		return r.Tags[providers.TagManagedBy] == providers.ManagedByValue && r.Tags[providers.TagCluster] == key.ClusterID &&
			ownsChild(ResourceName(key), name)
	}
	return owns(r.Tags, key)
}

func (e *env) harness() *providertest.Harness {
	return &providertest.Harness{
		Provider:      e.p,
		ClusterID:     testCluster,
		Resources:     e.resources,
		MutatingCalls: func() int { return e.srv.Stats().Mutating },
		InjectTransient: func(n int) {
			e.srv.InjectThrottle(n, time.Second)
		},
		CrashAfter: e.srv.CrashAfter,
		Recover:    e.srv.Recover,
		PlantForeign: func(key providers.Key) {
			e.srv.AddPublicIP(testSub, testRG, ResourceName(key), map[string]string{"owner": "someone-else"})
		},
		Owned: func(r providertest.Resource, key providers.Key) bool {
			return owned(r, key)
		},
		Settle: e.srv.Settle,
	}
}

// Builders for desired state.

func key(name string) providers.Key {
	return providers.Key{ClusterID: testCluster, Namespace: "default", Name: name, UID: "uid-" + name}
}

func desired(name string, nodes ...string) *providers.LoadBalancer {
	if len(nodes) == 0 {
		nodes = []string{"node-a", "node-b"}
	}
	return providertest.DefaultDesired(key(name), nodes, []providers.Port{providertest.TCP(80, 30080)})
}

func internal(d *providers.LoadBalancer, ip string) *providers.LoadBalancer {
	d.Scheme = providers.SchemeInternal
	if ip != "" {
		d.RequestedIPs = []netip.Addr{netip.MustParseAddr(ip)}
	}
	return d
}

func withAnnotations(d *providers.LoadBalancer, kv ...string) *providers.LoadBalancer {
	d.Annotations = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Annotations[kv[i]] = kv[i+1]
	}
	return d
}

// ensure retries transient errors as the controller would.
func ensure(t testing.TB, p *Provider, d *providers.LoadBalancer) *providers.Status {
	t.Helper()
	var err error
	for range 10 {
		var st *providers.Status
		if st, err = p.Ensure(context.Background(), d); err == nil {
			return st
		}
		if _, ok := providers.IsRetryable(err); !ok {
			break
		}
	}
	t.Fatalf("Ensure(%s): %v", d.Key, err)
	return nil
}
