package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/azure"
)

// Settings of a run on a real account (docs/providers/azure.md, "Checks on
// a real account").
const (
	envSubscription  = "PORTICO_E2E_AZURE_SUBSCRIPTION_ID"
	envResourceGroup = "PORTICO_E2E_AZURE_RESOURCE_GROUP"
	envLocation      = "PORTICO_E2E_AZURE_LOCATION"
	envVNet          = "PORTICO_E2E_AZURE_VNET"
	envNSG           = "PORTICO_E2E_AZURE_NSG"
	envNodes         = "PORTICO_E2E_AZURE_NODES"     // name=ip,name=ip
	envNodePort      = "PORTICO_E2E_AZURE_NODE_PORT" // default 30080
)

// TestAzureRealAccount runs the short scenario of make e2e-azure: a load
// balancer over the given instances, traffic through it, a port change,
// delete, and no resource left with the run's marks. Without the settings
// it is skipped.
func TestAzureRealAccount(t *testing.T) {
	get := func(k string) string { return strings.TrimSpace(os.Getenv(k)) }
	var missing []string
	for _, k := range []string{envSubscription, envResourceGroup, envLocation, envVNet, envNodes} {
		if get(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		t.Skipf("no real Azure account configured: set %s (and optionally %s, %s) and sign in for DefaultAzureCredential (az login, or AZURE_* variables); see docs/providers/azure.md, \"Checks on a real account\"",
			strings.Join(missing, ", "), envNSG, envNodePort)
	}
	nodePort := int32(30080)
	if v := get(envNodePort); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			t.Fatalf("%s=%q is not a port", envNodePort, v)
		}
		nodePort = int32(n)
	}
	nodes, err := parseNodes(get(envNodes))
	if err != nil {
		t.Fatalf("%s: %v", envNodes, err)
	}
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		t.Fatalf("credentials: %v", err)
	}
	runID := "e2e-" + randomHex(4)
	t.Logf("run %s: resources carry portico-cluster=%s", runID, runID)
	p, err := azure.New(azure.Options{
		ClusterID: runID, SubscriptionID: get(envSubscription), ResourceGroup: get(envResourceGroup),
		Location: get(envLocation), VNetName: get(envVNet), SecurityGroupName: get(envNSG),
		LoadBalancerName: "portico-" + runID, Credential: cred, ClientOptions: &arm.ClientOptions{},
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := armnetwork.NewClientFactory(get(envSubscription), cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	scope := Scope{ResourceGroup: get(envResourceGroup), SecurityGroup: get(envNSG)}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	key := providers.Key{ClusterID: runID, Namespace: "e2e", Name: "web"}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer ccancel()
		_ = retry(cctx, func() error { return p.Delete(cctx, key) })
		if left, err := Leftovers(cctx, f, scope, runID); err != nil || len(left) > 0 {
			t.Errorf("left behind by run %s: %v (listing error: %v)", runID, left, err)
		}
	})

	d := &providers.LoadBalancer{
		Key: key, Class: p.Class(), Nodes: nodes, TrafficPolicy: providers.TrafficPolicyCluster,
		Ports: []providers.Port{{Name: "http", Protocol: providers.TCP, Port: 80, NodePort: nodePort}},
		// Plain instances run no kube-proxy: probe the node port itself.
		Annotations: map[string]string{azure.AnnotationProbeProtocol: "Tcp", azure.AnnotationProbePort: strconv.Itoa(int(nodePort))},
	}
	addr := ensureAndReach(ctx, t, p, d, 80)

	t.Log("changing port 80 to 8080")
	d.Ports[0].Port = 8080
	if got := ensureAndReach(ctx, t, p, d, 8080); got != addr {
		t.Errorf("the address changed with the port: %s -> %s", addr, got)
	}

	if err := retry(ctx, func() error { return p.Delete(ctx, key) }); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	left, err := Leftovers(ctx, f, scope, runID)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("after Delete, run %s left: %v", runID, left)
	}
}

// ensureAndReach ensures d until it succeeds, then sends HTTP requests to
// its address on port until one is answered.
func ensureAndReach(ctx context.Context, t *testing.T, p *azure.Provider, d *providers.LoadBalancer, port int) netip.Addr {
	t.Helper()
	var st *providers.Status
	if err := retry(ctx, func() (err error) { st, err = p.Ensure(ctx, d); return err }); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if len(st.Ingress) == 0 {
		t.Fatal("no address")
	}
	ip := st.Ingress[0].IP
	url := "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(port)) + "/"
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(5 * time.Minute) // rules and probes take a few minutes to program
	for {
		resp, err := client.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			t.Logf("%s answered %s", url, resp.Status)
			return ip
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer from %s: %v", url, err)
		}
		time.Sleep(10 * time.Second)
	}
}

// retry calls fn until it succeeds, requeueing retryable errors after their
// delay as the controller does.
func retry(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if err == nil {
			return nil
		}
		after, ok := providers.IsRetryable(err)
		if !ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(max(after, 2*time.Second)):
		}
	}
}

// parseNodes reads "name=ip,name=ip".
func parseNodes(s string) ([]providers.Node, error) {
	var out []providers.Node
	for _, kv := range strings.Split(s, ",") {
		name, ip, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("%q is not name=ip", kv)
		}
		a, err := netip.ParseAddr(ip)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("%q: not an IPv4 address", ip)
		}
		out = append(out, providers.Node{Name: name, InternalIPs: []netip.Addr{a}})
	}
	return out, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
