// Package dataplane_test is the end-to-end test of local mode with the
// kernel data plane: a real apiserver, the operator with the local backend,
// three node namespaces running the real portico-forwarder (announcement and
// nftables), pods behind the nodes whose Pod objects the real EndpointSlice
// controller publishes for the Services that select them, and clients on the
// bridge. Every check is real traffic; a forwarder that panics or exits on its
// own fails the test.
package dataplane_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/dataplane/dptest"
	"github.com/portico-lb/portico/e2e/cluster"
	"github.com/portico-lb/portico/e2e/netlab"
	"github.com/portico-lb/portico/internal/testenv"
)

const class = "lb.portico.dev/local"

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "portico-forwarder")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/portico-forwarder").CombinedOutput(); err != nil {
		t.Fatalf("building forwarder: %v\n%s", err, out)
	}
	return bin
}

func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("not reached within %s: %v", d, err)
}

type world struct {
	t  *testing.T
	c  *cluster.Cluster
	ns string
}

func setup(t *testing.T) *world {
	w := setupCluster(t)
	if err := w.c.StartOperator(); err != nil {
		t.Fatal(err)
	}
	return w
}

// setupCluster is setup without an operator: the test runs its own.
func setupCluster(t *testing.T) *world {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and nftables")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	c, err := cluster.Start(cluster.Options{ForwarderBin: build(t), LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, c: c, ns: "dp"}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Nodes {
				b, _ := os.ReadFile(n.Log)
				lines := strings.Split(string(b), "\n")
				if len(lines) > 30 {
					lines = lines[len(lines)-30:]
				}
				t.Logf("forwarder %s:\n%s", n.Name, strings.Join(lines, "\n"))
			}
		}
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	w.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.ns}})
	w.create(&lbv1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "dp"}, Spec: lbv1.IPPoolSpec{Addresses: []string{"10.88.0.200-10.88.0.220"}}})
	return w
}

func (w *world) create(objs ...client.Object) {
	w.t.Helper()
	for _, o := range objs {
		if err := w.c.Env.Client.Create(context.Background(), o); err != nil {
			w.t.Fatalf("creating %s: %v", o.GetName(), err)
		}
	}
}

// service creates a LoadBalancer Service for the pods selector selects.
func (w *world) service(name string, proto corev1.Protocol, port int32, selector map[string]string, mutate ...func(*corev1.Service)) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:              corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: ptr.To(class),
			Selector:          selector,
			Ports:             []corev1.ServicePort{{Name: "p", Protocol: proto, Port: port, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	for _, m := range mutate {
		m(svc)
	}
	w.create(svc)
	return svc
}

// address waits for the Service's address and for its announcement.
func (w *world) address(svc *corev1.Service) netip.AddrPort {
	w.t.Helper()
	var ip netip.Addr
	eventually(w.t, 30*time.Second, func() error {
		got := &corev1.Service{}
		if err := w.c.Env.Client.Get(context.Background(), client.ObjectKeyFromObject(svc), got); err != nil {
			return err
		}
		if len(got.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("no address yet (conditions %v)", got.Status.Conditions)
		}
		ip = netip.MustParseAddr(got.Status.LoadBalancer.Ingress[0].IP)
		return nil
	})
	return netip.AddrPortFrom(ip, uint16(svc.Spec.Ports[0].Port))
}

func tcpReplies(t *testing.T, h *netlab.Host, addr netip.AddrPort, n int) map[string]int {
	t.Helper()
	seen, err := tryTCPReplies(h, addr, n)
	if err != nil {
		t.Fatal(err)
	}
	return seen
}

// tryTCPReplies is tcpReplies for an eventually loop over a change of the
// cluster: a connection in flight when its address moves to another node
// is reset (the new node has no conntrack entry for it, as with any L2
// failover), so a failed connection there is a reason to try again, not
// the test's failure.
func tryTCPReplies(h *netlab.Host, addr netip.AddrPort, n int) (map[string]int, error) {
	seen := map[string]int{}
	for range n {
		r, err := dptest.AskTCP(h, addr, 2*time.Second)
		if err != nil {
			return seen, fmt.Errorf("TCP to %s: %w", addr, err)
		}
		seen[r.Server]++
	}
	return seen, nil
}

func TestLocalModeDataPlane(t *testing.T) {
	w := setup(t)
	c := w.c
	var pods []*cluster.Pod
	for i, n := range c.Nodes {
		p, err := c.AddPod(n, w.ns, fmt.Sprintf("pod-%d", i+1), 8080, map[string]string{"app": "web"})
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}

	web := w.service("web", corev1.ProtocolTCP, 80, map[string]string{"app": "web"})
	addr := w.address(web)

	t.Run("traffic reaches endpoints on several nodes", func(t *testing.T) {
		var seen map[string]int
		eventually(t, 30*time.Second, func() error {
			if _, err := dptest.AskTCP(c.Client, addr, time.Second); err != nil {
				return err
			}
			return nil
		})
		seen = tcpReplies(t, c.Client, addr, 60)
		if len(seen) < 3 {
			t.Fatalf("60 connections reached %v; want all three pods on three nodes", seen)
		}
	})

	t.Run("a pod that is no longer ready gets no new connections", func(t *testing.T) {
		if err := c.SetPodReady(pods[2], false); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			if seen := tcpReplies(t, c.Client, addr, 20); seen[pods[2].Name] > 0 {
				return fmt.Errorf("not-ready %s still got connections: %v", pods[2].Name, seen)
			}
			return nil
		})
		if seen := tcpReplies(t, c.Client, addr, 60); seen[pods[2].Name] > 0 || len(seen) != 2 {
			t.Fatalf("after removal: %v; want only %s and %s", seen, pods[0].Name, pods[1].Name)
		}
	})

	t.Run("Local preserves the client IP", func(t *testing.T) {
		loc := w.service("local", corev1.ProtocolTCP, 81, map[string]string{"pod": pods[1].Name}, func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		})
		la := w.address(loc)
		var r dptest.Reply
		eventually(t, 30*time.Second, func() (err error) { r, err = dptest.AskTCP(c.Client, la, time.Second); return err })
		if r.Server != pods[1].Name || r.Client != c.Client.IPv4.Addr() {
			t.Fatalf("reply %+v; want %s seeing the client's own address %s", r, pods[1].Name, c.Client.IPv4.Addr())
		}
	})

	t.Run("source ranges block other clients", func(t *testing.T) {
		other, err := c.Lab.AddHost("other", netip.MustParsePrefix("10.88.0.101/24"), netip.Prefix{})
		if err != nil {
			t.Fatal(err)
		}
		rs := w.service("ranged", corev1.ProtocolTCP, 82, map[string]string{"pod": pods[0].Name}, func(s *corev1.Service) {
			s.Spec.LoadBalancerSourceRanges = []string{c.Client.IPv4.Addr().String() + "/32"}
		})
		ra := w.address(rs)
		eventually(t, 30*time.Second, func() (err error) { _, err = dptest.AskTCP(c.Client, ra, time.Second); return err })
		for range 5 {
			if r, err := dptest.AskTCP(other, ra, 500*time.Millisecond); err == nil {
				t.Fatalf("client outside loadBalancerSourceRanges got a reply: %+v", r)
			}
		}
	})

	t.Run("pod targets without node ports", func(t *testing.T) {
		// allocateLoadBalancerNodePorts: false: the local backend sends to
		// the endpoints directly, so no NodePort (which would bypass
		// loadBalancerSourceRanges) is opened.
		np := w.service("no-nodeports", corev1.ProtocolTCP, 83, map[string]string{"app": "web"}, func(s *corev1.Service) {
			s.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
		})
		na := w.address(np)
		var r dptest.Reply
		eventually(t, 30*time.Second, func() (err error) { r, err = dptest.AskTCP(c.Client, na, time.Second); return err })
		if !strings.HasPrefix(r.Server, "pod-") {
			t.Fatalf("reply %+v", r)
		}
		got := &corev1.Service{}
		if err := c.Env.Client.Get(context.Background(), client.ObjectKeyFromObject(np), got); err != nil {
			t.Fatal(err)
		}
		if got.Spec.Ports[0].NodePort != 0 {
			t.Errorf("nodePort %d allocated", got.Spec.Ports[0].NodePort)
		}
	})

	t.Run("UDP works", func(t *testing.T) {
		dns := w.service("dns", corev1.ProtocolUDP, 53, map[string]string{"app": "web"})
		da := w.address(dns)
		var r dptest.Reply
		eventually(t, 30*time.Second, func() (err error) { r, err = dptest.AskUDP(c.Client, da, time.Second); return err })
		if !strings.HasPrefix(r.Server, "pod-") {
			t.Fatalf("UDP reply %+v", r)
		}
	})

	t.Run("forwarder restarts keep load balancing", func(t *testing.T) {
		for _, n := range c.Nodes {
			c.StopForwarder(n)
			if err := c.StartForwarder(n); err != nil {
				t.Fatal(err)
			}
		}
		var seen map[string]int
		eventually(t, 30*time.Second, func() error {
			seen = map[string]int{}
			for range 40 {
				r, err := dptest.AskTCP(c.Client, addr, time.Second)
				if err != nil {
					return err
				}
				seen[r.Server]++
			}
			if len(seen) != 2 {
				return fmt.Errorf("after restarts: %v", seen)
			}
			return nil
		})
	})

	t.Run("a node that stops its heartbeat loses its pods' traffic", func(t *testing.T) {
		// pods[2] is not ready since the subtest above: make it ready again,
		// then let pods[1]'s node die. The node lifecycle controller marks
		// the node Unknown and its pods not ready; the EndpointSlice
		// controller and then the forwarders follow.
		if err := c.SetPodReady(pods[2], true); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, func() error {
			if seen := tcpReplies(t, c.Client, addr, 30); len(seen) != 3 {
				return fmt.Errorf("before the node dies: %v", seen)
			}
			return nil
		})
		dead := pods[1].Node
		c.StopHeartbeat(dead)
		t.Cleanup(func() { c.StartHeartbeat(dead) })
		// The dead node may have been announcing the address (its Node is
		// no longer Ready, so the address moves): connections in flight
		// then are reset, and the loop asks again.
		eventually(t, testenv.NodeMonitorGracePeriod+30*time.Second, func() error {
			seen, err := tryTCPReplies(c.Client, addr, 30)
			if err != nil {
				return err
			}
			if seen[pods[1].Name] > 0 || len(seen) != 2 {
				return fmt.Errorf("after %s died: %v", dead.Name, seen)
			}
			return nil
		})
	})

	t.Run("cleanup leaves nothing in nftables", func(t *testing.T) {
		n := c.Nodes[0]
		c.StopForwarder(n)
		bin := build(t)
		if out, err := testenv.RunChecked("portico-forwarder --cleanup", n.Host.Command(bin, "--cleanup")); err != nil {
			t.Fatalf("--cleanup: %v\n%s", err, out)
		}
		out, err := n.Host.Command("nft", "list", "ruleset").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list ruleset: %v\n%s", err, out)
		}
		if strings.Contains(string(out), "portico") {
			t.Fatalf("Portico's rules survive --cleanup:\n%s", out)
		}
	})
}
