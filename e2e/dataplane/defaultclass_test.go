package dataplane_test

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/controllers"
	"github.com/portico-lb/portico/dataplane/dptest"
	"github.com/portico-lb/portico/internal/testenv"
	"github.com/portico-lb/portico/model"
)

// operatorProcess runs the portico-operator binary as the kind install
// does (--default-class lb.portico.dev/local), so that a test can kill -9 it.
type operatorProcess struct {
	t    *testing.T
	bin  string
	args []string
	p    *testenv.Process
}

func (o *operatorProcess) start() {
	o.t.Helper()
	p, err := testenv.StartProcess("portico-operator", exec.Command(o.bin, o.args...), testenv.ProcessOptions{CleanExit: true})
	if err != nil {
		o.t.Fatal(err)
	}
	o.p = p
}

// kill plays a crash: SIGKILL, no cleanup. A panic before it still fails.
func (o *operatorProcess) kill() {
	o.t.Helper()
	o.p.Kill()
	if err := o.p.Err(); err != nil {
		o.t.Fatal(err)
	}
}

var arpReply = regexp.MustCompile(`from ([0-9a-f]{2}(?::[0-9a-f]{2}){5}) \(`)

// announcers asks for ip with ARP from the client and returns the distinct
// MAC addresses that answered.
func (w *world) announcers(ip netip.Addr) []string {
	w.t.Helper()
	out, _ := w.c.Client.Command("arping", "-c", "3", "-i", w.c.Client.Link, ip.String()).CombinedOutput()
	var macs []string
	for _, m := range arpReply.FindAllStringSubmatch(string(out), -1) {
		if !slices.Contains(macs, m[1]) {
			macs = append(macs, m[1])
		}
	}
	return macs
}

// TestDefaultClassServiceThroughOperatorCrashes is the kind install path: the
// operator runs with --default-class lb.portico.dev/local, and a Service
// without spec.loadBalancerClass is announced by exactly one node, serves
// traffic, is counted by its IPPool, and keeps its address across five
// kill -9 of the operator while other Services, some asking for that very
// address, are created during the outages.
func TestDefaultClassServiceThroughOperatorCrashes(t *testing.T) {
	w := setupCluster(t)
	c := w.c
	bin := filepath.Join(t.TempDir(), "portico-operator")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/portico-operator").CombinedOutput(); err != nil {
		t.Fatalf("building operator: %v\n%s", err, out)
	}
	op := &operatorProcess{t: t, bin: bin, args: []string{"--kubeconfig", c.Env.Kubeconfig,
		"--providers", "local", "--default-class", model.LocalClass, "--cluster-id", "e2e",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--config-error-backoff", "2s", "--retry-base-delay", "100ms", "--node-batch-window", "200ms"}}
	op.start()
	t.Cleanup(func() {
		if err := op.p.Stop(); err != nil {
			t.Error(err)
		}
	})
	pod, err := c.AddPod(c.Nodes[0], w.ns, "web-1", 8080, map[string]string{"app": "web"})
	if err != nil {
		t.Fatal(err)
	}
	unclassed := func(name string, port int32, mutate ...func(*corev1.Service)) *corev1.Service {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Name: "p", Protocol: corev1.ProtocolTCP, Port: port, TargetPort: intstr.FromInt32(8080)}}},
		}
		for _, m := range mutate {
			m(svc)
		}
		w.create(svc)
		return svc
	}
	web := unclassed("web", 80)
	addr := w.address(web)

	serves := func() {
		t.Helper()
		eventually(t, 30*time.Second, func() error {
			r, err := dptest.AskTCP(c.Client, addr, time.Second)
			if err != nil {
				return err
			}
			if r.Server != pod.Name {
				return fmt.Errorf("reply from %s", r.Server)
			}
			if macs := w.announcers(addr.Addr()); len(macs) != 1 {
				return fmt.Errorf("%s is announced by %d nodes: %v", addr.Addr(), len(macs), macs)
			}
			return nil
		})
	}
	assigned := func(want int64) {
		t.Helper()
		eventually(t, 30*time.Second, func() error {
			var pool lbv1.IPPool
			if err := c.Env.Client.Get(context.Background(), client.ObjectKey{Name: "dp"}, &pool); err != nil {
				return err
			}
			if pool.Status.Assigned != want {
				return fmt.Errorf("IPPool assigned %d, want %d", pool.Status.Assigned, want)
			}
			return nil
		})
	}
	serves()
	assigned(1)

	for i := range 5 {
		op.kill()
		// During the outage: a Service that asks for web's address, and one
		// that takes any.
		thief := unclassed(fmt.Sprintf("thief-%d", i), 90, func(s *corev1.Service) {
			s.Annotations = map[string]string{model.AnnotationIP: addr.Addr().String()}
		})
		other := unclassed(fmt.Sprintf("other-%d", i), 91)
		op.start()

		eventually(t, 30*time.Second, func() error {
			var got corev1.Service
			if err := c.Env.Client.Get(context.Background(), client.ObjectKeyFromObject(thief), &got); err != nil {
				return err
			}
			cond := meta.FindStatusCondition(got.Status.Conditions, controllers.ConditionReady)
			if len(got.Status.LoadBalancer.Ingress) != 0 || cond == nil || cond.Status != metav1.ConditionFalse {
				return fmt.Errorf("%s: ingress %v condition %+v; want pending", thief.Name, got.Status.LoadBalancer.Ingress, cond)
			}
			return nil
		})
		if oa := w.address(other); oa.Addr() == addr.Addr() {
			t.Fatalf("%s was given web's address %s", other.Name, addr.Addr())
		}
		if now := w.address(web); now.Addr() != addr.Addr() {
			t.Fatalf("after operator crash %d, web moved from %s to %s", i+1, addr.Addr(), now.Addr())
		}
		serves()
		assigned(int64(2 + i))
	}
}
