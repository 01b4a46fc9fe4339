package gcp_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/operator"
	"github.com/portico-lb/portico/internal/testenv"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/gcp"
	"github.com/portico-lb/portico/providers/gcp/gcpfake"
)

const itCluster = "it-gcp"

// TestOperatorOnControlPlane runs the real operator against a real
// kube-apiserver with the GCP backend built by its flag-driven factory: the
// endpoint comes from --gcp-endpoint and the credentials from Application
// Default Credentials (GOOGLE_APPLICATION_CREDENTIALS naming a service-account
// key made for the test); the fake refuses unauthenticated calls.
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
	f := gcpfake.New(gcpfake.Options{Project: testProject, Region: testRegion, RequireAuth: true, OpDelay: 20 * time.Millisecond,
		// Backends turn healthy only after their health checks pass, as on
		// Compute Engine: the Service must get its address before that.
		HealthyAfter: 3 * time.Second})
	t.Cleanup(f.Close)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", writeServiceAccountKey(t, f.TokenURL()))

	ctx := context.Background()
	c := env.Client
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gcp-it"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"node-a", "node-b", "node-c"} {
		f.AddInstance(zoneOf(name), name)
		testenv.CreateNode(t, c, gen.Node(name, fmt.Sprintf("10.0.0.%d", 10+i), gen.WithProviderID(fmt.Sprintf("gce://%s/%s/%s", testProject, zoneOf(name), name))))
	}
	op := startGCPOperator(t, opCfg, f.URL())

	svc := gen.Service(ns.Name, "web", gen.WithClass(providers.Class(gcp.Name)), gen.ForAPI())
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	k := providers.Key{ClusterID: itCluster, Namespace: ns.Name, Name: "web"}
	base := gcp.BaseName(k)

	t.Run("address in status", func(t *testing.T) {
		testenv.Eventually(t, 30*time.Second, func() error {
			got := &corev1.Service{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(svc), got); err != nil {
				return err
			}
			ing := got.Status.LoadBalancer.Ingress
			addr, ok := find(f, regional("addresses", base))
			if !ok || len(ing) != 1 || ing[0].IP != addr["address"] {
				return fmt.Errorf("ingress %+v, address %v, conditions %+v, %d API calls", ing, addr, got.Status.Conditions, len(f.Calls()))
			}
			return members(f, 3)
		})
	})

	t.Run("port change", func(t *testing.T) {
		testenv.UpdateService(t, c, svc, func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, gen.Port("dns", corev1.ProtocolUDP, 53, 0))
		})
		testenv.Eventually(t, 30*time.Second, func() error {
			if _, ok := find(f, regional("forwardingRules", base+"-udp")); !ok {
				return fmt.Errorf("no UDP forwarding rule yet")
			}
			return nil
		})
	})

	t.Run("node change", func(t *testing.T) {
		if err := c.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-c"}}); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, func() error { return members(f, 2) })
	})

	t.Run("delete leaves nothing", func(t *testing.T) {
		testenv.DeleteServiceAndWait(t, c, svc)
		testenv.Eventually(t, 30*time.Second, func() error {
			f.Settle()
			if rs := f.Resources(); len(rs) != 0 {
				return fmt.Errorf("the fake still holds %v", ids(rs))
			}
			return nil
		})
	})

	t.Run("killed mid-provision", func(t *testing.T) {
		op.stop(t)
		op = startGCPOperator(t, opCfg, f.URL())
		// Let three mutating calls through (address, health check, the
		// zone's instance group), then fail everything as if the operator
		// died.
		f.CrashAfter(3)
		crashed := gen.Service(ns.Name, "crash", gen.WithClass(providers.Class(gcp.Name)), gen.ForAPI(),
			gen.WithPorts(gen.Port("http", corev1.ProtocolTCP, 80, 0), gen.Port("https", corev1.ProtocolTCP, 443, 0)))
		if err := c.Create(ctx, crashed); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, func() error {
			for _, call := range f.Calls() {
				if call.Code == 503 {
					return nil
				}
			}
			return fmt.Errorf("no call has failed yet")
		})
		op.stop(t)
		f.Settle()
		if n := len(f.Resources()); n == 0 || n >= 7 {
			t.Fatalf("after the crash the fake holds %d resources (%v), want a partial load balancer", n, ids(f.Resources()))
		}
		f.ClearFaults()
		op = startGCPOperator(t, opCfg, f.URL())
		ck := providers.Key{ClusterID: itCluster, Namespace: ns.Name, Name: "crash"}
		testenv.Eventually(t, 30*time.Second, func() error {
			got := &corev1.Service{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(crashed), got); err != nil {
				return err
			}
			if len(got.Status.LoadBalancer.Ingress) != 1 {
				return fmt.Errorf("no address yet")
			}
			return members(f, 2)
		})
		kinds := map[string]int{}
		for _, r := range f.Resources() {
			marks := gcp.Marks(r.Description)
			if r.Kind == "instanceGroups" {
				if marks[providers.TagCluster] != itCluster || marks[providers.TagManagedBy] != providers.ManagedByValue {
					t.Errorf("instance group %s lacks the cluster marks: %q", r.ID, r.Description)
				}
			} else if !providers.Owns(marks, ck) {
				t.Errorf("%s is not marked for %s: %q", r.ID, ck, r.Description)
			}
			kinds[r.Kind]++
		}
		want := map[string]int{"addresses": 1, "forwardingRules": 1, "backendServices": 1, "healthChecks": 1, "firewalls": 2, "instanceGroups": 2}
		if fmt.Sprint(kinds) != fmt.Sprint(want) {
			t.Errorf("after restart: %v, want %v (no duplicates, no leaks)", kinds, want)
		}
		testenv.DeleteServiceAndWait(t, c, crashed)
		testenv.Eventually(t, 30*time.Second, func() error {
			f.Settle()
			if rs := f.Resources(); len(rs) != 0 {
				return fmt.Errorf("the fake still holds %v", ids(rs))
			}
			return nil
		})
	})
	op.stop(t)

	for _, call := range f.Calls() {
		if call.Code == 401 {
			t.Errorf("the operator made an unauthenticated call: %s %s", call.Method, call.Path)
		}
	}
}

// writeServiceAccountKey writes a service-account key file with a fresh RSA
// key whose token_uri is the fake's token endpoint: the clients sign a JWT
// with the key and exchange it for an access token there, as they would with
// Google's.
func writeServiceAccountKey(t *testing.T, tokenURL string) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     testProject,
		"private_key_id": "test-key",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   "portico@" + testProject + ".iam.gserviceaccount.com",
		"client_id":      "1234567890",
		"token_uri":      tokenURL,
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func find(f *gcpfake.Server, id string) (gcpfake.Object, bool) {
	for _, r := range f.Resources() {
		if r.ID == id {
			return r.Object, true
		}
	}
	return nil, false
}

func ids(rs []gcpfake.Resource) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// members checks that the cluster's instance groups hold n instances in all.
func members(f *gcpfake.Server, n int) error {
	total := 0
	for _, r := range f.Resources() {
		if r.Kind == "instanceGroups" {
			parts := strings.Split(r.ID, "/")
			total += len(f.Members(parts[1], parts[3]))
		}
	}
	if total != n {
		return fmt.Errorf("instance groups hold %d instances, want %d", total, n)
	}
	return nil
}

type gcpOperator struct {
	cancel context.CancelFunc
	done   chan error
}

func (o *gcpOperator) stop(t *testing.T) {
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

func startGCPOperator(t *testing.T, cfg *rest.Config, endpoint string) *gcpOperator {
	t.Helper()
	o := operator.DefaultOptions()
	o.Providers = []string{gcp.Name}
	o.ClusterID = itCluster
	o.MetricsAddr, o.ProbeAddr = "0", "0"
	o.NodeBatchWindow = 100 * time.Millisecond
	o.RetryBase, o.RetryMax = 50*time.Millisecond, time.Second
	o.ResyncPeriod = time.Hour
	gc := o.Backends[gcp.Name].(*gcp.Config)
	gc.Project, gc.Region, gc.Network = testProject, testRegion, "default"
	gc.Endpoint = endpoint
	gc.NetworkTier, gc.ClusterHealthCheckPort = "PREMIUM", 10256
	gc.Attempts, gc.QPS, gc.Burst = 2, 1000, 100
	ctx, cancel := context.WithCancel(context.Background())
	mgr, _, err := operator.New(ctx, cfg, o)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	run := &gcpOperator{cancel: cancel, done: make(chan error, 1)}
	go func() { run.done <- mgr.Start(ctx) }()
	t.Cleanup(func() { run.stop(t) })
	return run
}
