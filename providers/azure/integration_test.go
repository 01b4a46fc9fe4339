package azure_test

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/controllers"
	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/operator"
	"github.com/portico-lb/portico/internal/testenv"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/azure"
	"github.com/portico-lb/portico/providers/azure/azurefake"
)

const (
	itCluster = "it-azure"
	itSub     = "00000000-0000-0000-0000-0000000000aa"
	itRG      = "mc_it_azure"
	itNSG     = "aks-agentpool-nsg"
)

type itCredential struct{}

func (itCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "fake", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// TestOperatorOnControlPlane runs the real operator with the azure backend,
// whose real SDK clients talk to the fake ARM endpoint, against a real
// kube-apiserver and etcd.
func TestOperatorOnControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver and etcd")
	}
	if _, err := testenv.BinDir(); err != nil {
		t.Skipf("control-plane binaries not built (hack/build-tools.sh): %v", err)
	}
	env := testenv.Start(t)
	opCfg, err := env.OperatorConfig()
	if err != nil {
		t.Fatal(err)
	}
	f := azurefake.New(azurefake.Options{OperationLatency: 20 * time.Millisecond})
	t.Cleanup(f.Close)
	f.AddSecurityGroup(itSub, itRG, itNSG)

	ctx := context.Background()
	c := env.Client
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "azure-it"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"node-a", "node-b", "node-c"} {
		testenv.CreateNode(t, c, gen.Node(name, fmt.Sprintf("10.224.0.%d", 4+i),
			gen.WithProviderID("azure:///subscriptions/"+itSub+"/resourceGroups/"+itRG+"/providers/Microsoft.Compute/virtualMachines/"+name)))
	}
	op := startOperator(t, opCfg, f)

	class := gen.WithClass(providers.Class(azure.Name))
	web := gen.Service(ns.Name, "web", class, gen.ForAPI())
	api := gen.Service(ns.Name, "api", class, gen.ForAPI())
	pub := lbID(itCluster)

	t.Run("address in status", func(t *testing.T) {
		for _, s := range []*corev1.Service{web, api} {
			if err := c.Create(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		testenv.Eventually(t, 30*time.Second, func() error {
			for _, s := range []*corev1.Service{web, api} {
				ip, err := ingressIP(c, s)
				if err != nil {
					return err
				}
				if !netip.MustParsePrefix("20.60.0.0/16").Contains(ip) {
					return fmt.Errorf("%s has address %s, not a public IP of the fake", s.Name, ip)
				}
			}
			return poolSizes(f.LoadBalancer(pub), 3, web, api)
		})
	})

	t.Run("two Services updated concurrently on the shared load balancer", func(t *testing.T) {
		var wg sync.WaitGroup
		for _, s := range []*corev1.Service{web, api} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				testenv.UpdateService(t, c, s, func(s *corev1.Service) {
					s.Spec.Ports = append(s.Spec.Ports, gen.Port("https", corev1.ProtocolTCP, 443, 0))
				})
			}()
		}
		wg.Wait()
		testenv.Eventually(t, 30*time.Second, func() error {
			lb := f.LoadBalancer(pub)
			for _, s := range []*corev1.Service{web, api} {
				if got := rulePorts(lb, s); got != "443,80" {
					return fmt.Errorf("%s rules carry ports %s, want 443,80", s.Name, got)
				}
			}
			return nil
		})
	})

	t.Run("node change", func(t *testing.T) {
		if err := c.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-c"}}); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, func() error { return poolSizes(f.LoadBalancer(pub), 2, web, api) })
	})

	t.Run("annotation change touches only its Service", func(t *testing.T) {
		testenv.UpdateService(t, c, web, func(s *corev1.Service) {
			s.Annotations = map[string]string{azure.AnnotationIdleTimeout: "17"}
		})
		testenv.Eventually(t, 30*time.Second, func() error {
			lb := f.LoadBalancer(pub)
			for _, r := range lb.Properties.LoadBalancingRules {
				want := int32(4)
				if strings.HasPrefix(*r.Name, azure.ResourceName(key(web))+"-") {
					want = 17
				}
				if got := *r.Properties.IdleTimeoutInMinutes; got != want {
					return fmt.Errorf("rule %s idle timeout %d, want %d", *r.Name, got, want)
				}
			}
			return nil
		})
	})

	t.Run("prefix outside the allowed resource groups is a False condition", func(t *testing.T) {
		borrow := gen.Service(ns.Name, "borrow", class, gen.ForAPI())
		borrow.Annotations = map[string]string{azure.AnnotationPublicIPPrefix: "/subscriptions/" + itSub + "/resourceGroups/team-b/providers/Microsoft.Network/publicIPPrefixes/theirs"}
		if err := c.Create(ctx, borrow); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, func() error {
			var got corev1.Service
			if err := c.Get(ctx, client.ObjectKeyFromObject(borrow), &got); err != nil {
				return err
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == controllers.ConditionReady && cond.Status == metav1.ConditionFalse && cond.Reason == providers.ReasonResourceNotAllowed {
					return nil
				}
			}
			return fmt.Errorf("conditions %+v, want Ready False %s", got.Status.Conditions, providers.ReasonResourceNotAllowed)
		})
		for _, r := range f.Resources() {
			if r.Kind == azurefake.KindPublicIP && r.Name == azure.ResourceName(key(borrow)) {
				t.Errorf("a public IP was created for a Service whose prefix is not allowed")
			}
		}
		testenv.DeleteServiceAndWait(t, c, borrow)
	})

	t.Run("delete leaves nothing", func(t *testing.T) {
		testenv.DeleteServiceAndWait(t, c, web)
		testenv.DeleteServiceAndWait(t, c, api)
		testenv.Eventually(t, 30*time.Second, func() error { return onlyNSGLeft(f) })
	})

	t.Run("killed mid-provision", func(t *testing.T) {
		op.stop(t)
		op = startOperator(t, opCfg, f)
		// The public IP is created, then the operator "dies" at the load
		// balancer write.
		f.CrashAfter(1)
		crashed := gen.Service(ns.Name, "crash", class, gen.ForAPI(),
			gen.WithPorts(gen.Port("http", corev1.ProtocolTCP, 80, 0), gen.Port("https", corev1.ProtocolTCP, 443, 0)))
		if err := c.Create(ctx, crashed); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, func() error {
			if !f.Crashed() {
				return fmt.Errorf("no call has failed yet")
			}
			return nil
		})
		op.stop(t)
		if n := countKind(f.Resources(), azurefake.KindPublicIP); n != 1 || f.LoadBalancer(pub) != nil {
			t.Fatalf("after the crash: %d public IPs and load balancer %v, want a lone public IP", n, f.LoadBalancer(pub) != nil)
		}
		f.Recover()
		op = startOperator(t, opCfg, f)
		testenv.Eventually(t, 30*time.Second, func() error {
			if _, err := ingressIP(c, crashed); err != nil {
				return err
			}
			return poolSizes(f.LoadBalancer(pub), 2, crashed)
		})
		kinds := map[string]int{}
		for _, r := range f.Resources() {
			kinds[r.Kind]++
		}
		want := map[string]int{
			azurefake.KindPublicIP: 1, azurefake.KindLoadBalancer: 1, azurefake.KindFrontend: 1, azurefake.KindBackendPool: 1,
			azurefake.KindProbe: 1, azurefake.KindRule: 2, azurefake.KindSecurityGroup: 1, azurefake.KindSecurityRule: 1,
		}
		if fmt.Sprint(kinds) != fmt.Sprint(want) {
			t.Errorf("after restart: %v, want %v (no duplicates, no leaks)", kinds, want)
		}
		testenv.DeleteServiceAndWait(t, c, crashed)
		testenv.Eventually(t, 30*time.Second, func() error { return onlyNSGLeft(f) })
	})
	op.stop(t)
}

func key(s *corev1.Service) providers.Key {
	return providers.Key{ClusterID: itCluster, Namespace: s.Namespace, Name: s.Name}
}

func lbID(cluster string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/loadBalancers/portico-%s", itSub, itRG, cluster)
}

func ingressIP(c client.Client, s *corev1.Service) (netip.Addr, error) {
	got := &corev1.Service{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(s), got); err != nil {
		return netip.Addr{}, err
	}
	ing := got.Status.LoadBalancer.Ingress
	if len(ing) != 1 {
		return netip.Addr{}, fmt.Errorf("%s ingress %+v", s.Name, ing)
	}
	return netip.ParseAddr(ing[0].IP)
}

// poolSizes checks that each Service's backend pool holds n addresses.
func poolSizes(lb *armnetwork.LoadBalancer, n int, svcs ...*corev1.Service) error {
	if lb == nil {
		return fmt.Errorf("no load balancer")
	}
	for _, s := range svcs {
		found := false
		for _, bp := range lb.Properties.BackendAddressPools {
			if *bp.Name == azure.ResourceName(key(s)) {
				found = true
				if got := len(bp.Properties.LoadBalancerBackendAddresses); got != n {
					return fmt.Errorf("%s pool has %d addresses, want %d", s.Name, got, n)
				}
			}
		}
		if !found {
			return fmt.Errorf("%s has no pool", s.Name)
		}
	}
	return nil
}

func rulePorts(lb *armnetwork.LoadBalancer, s *corev1.Service) string {
	var ports []string
	for _, r := range lb.Properties.LoadBalancingRules {
		if strings.HasPrefix(*r.Name, azure.ResourceName(key(s))+"-") {
			ports = append(ports, fmt.Sprint(*r.Properties.FrontendPort))
		}
	}
	sort.Strings(ports)
	return strings.Join(ports, ",")
}

func countKind(rs []azurefake.Resource, kind string) int {
	n := 0
	for _, r := range rs {
		if r.Kind == kind {
			n++
		}
	}
	return n
}

func onlyNSGLeft(f *azurefake.Server) error {
	for _, r := range f.Resources() {
		if r.Kind != azurefake.KindSecurityGroup {
			return fmt.Errorf("the fake still holds %s %s", r.Kind, r.ID)
		}
	}
	return nil
}

type runningOperator struct {
	cancel context.CancelFunc
	done   chan error
}

func (o *runningOperator) stop(t *testing.T) {
	t.Helper()
	if o.cancel == nil {
		return
	}
	o.cancel()
	o.cancel = nil
	select {
	case err := <-o.done:
		if err != nil {
			t.Errorf("operator: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("operator did not stop within 30s")
	}
}

// startOperator runs the operator with a fresh azure provider (as after a
// process restart) whose SDK clients point at the fake. The flag-driven
// factory is not used because DefaultAzureCredential would reach Entra ID.
func startOperator(t *testing.T, cfg *rest.Config, f *azurefake.Server) *runningOperator {
	t.Helper()
	cloudCfg, err := azure.CloudConfiguration("AzurePublic", f.URL())
	if err != nil {
		t.Fatal(err)
	}
	p, err := azure.New(azure.Options{
		ClusterID: itCluster, SubscriptionID: itSub, ResourceGroup: itRG, Location: "westeurope",
		VNetName: "aks-vnet", SubnetName: "aks-subnet", SecurityGroupName: itNSG,
		BatchWindow: 20 * time.Millisecond, PollInterval: time.Millisecond,
		Credential: itCredential{},
		ClientOptions: &arm.ClientOptions{ClientOptions: policy.ClientOptions{
			Cloud: cloudCfg, Transport: f.Client(),
			Retry: policy.RetryOptions{MaxRetries: 1, RetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Millisecond},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	o := operator.DefaultOptions()
	o.Providers = []string{azure.Name}
	o.Instances = map[string]providers.Provider{providers.Class(azure.Name): p}
	o.ClusterID = itCluster
	o.MetricsAddr, o.ProbeAddr = "0", "0"
	o.NodeBatchWindow = 100 * time.Millisecond
	o.RetryBase, o.RetryMax = 50*time.Millisecond, time.Second
	o.ResyncPeriod = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	mgr, _, err := operator.New(ctx, cfg, o)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	run := &runningOperator{cancel: cancel, done: make(chan error, 1)}
	go func() { run.done <- mgr.Start(ctx) }()
	t.Cleanup(func() { run.stop(t) })
	return run
}
