package aws_test

import (
	"context"
	"fmt"
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
	"github.com/portico-lb/portico/providers/aws"
	"github.com/portico-lb/portico/providers/aws/awsfake"
)

const itCluster = "it-aws"

// TestOperatorOnControlPlane runs the real operator, with the AWS backend
// built by its flag-driven factory and pointed at the fake through
// AWS_ENDPOINT_URL, against a real kube-apiserver.
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
	f := awsfake.New(awsfake.Options{Consistency: 50 * time.Millisecond})
	t.Cleanup(f.Close)
	f.SeedNetwork(itCluster)
	t.Setenv("AWS_ENDPOINT_URL", f.URL())
	t.Setenv("AWS_ACCESS_KEY_ID", awsfake.TestAccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", awsfake.TestSecretAccessKey)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")

	ctx := context.Background()
	c := env.Client
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "aws-it"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"node-a", "node-b", "node-c"} {
		testenv.CreateNode(t, c, gen.Node(name, fmt.Sprintf("10.0.0.%d", 10+i), gen.WithProviderID("aws:///us-east-1a/"+f.InstanceID(name))))
	}
	op := startAWSOperator(t, opCfg)

	svc := gen.Service(ns.Name, "web", gen.WithClass(providers.Class(aws.Name)), gen.ForAPI())
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	k := providers.Key{ClusterID: itCluster, Namespace: ns.Name, Name: "web"}

	t.Run("hostname in status", func(t *testing.T) {
		testenv.Eventually(t, 30*time.Second, func() error {
			got := &corev1.Service{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(svc), got); err != nil {
				return err
			}
			ing := got.Status.LoadBalancer.Ingress
			if len(ing) != 1 || !strings.HasSuffix(ing[0].Hostname, ".elb.us-east-1.amazonaws.com") {
				return fmt.Errorf("ingress %+v", ing)
			}
			lb, ok := f.LoadBalancerByName(aws.LoadBalancerName(k))
			if !ok || !strings.HasPrefix(ing[0].Hostname, lb.Name) {
				return fmt.Errorf("hostname %s does not name the NLB %s", ing[0].Hostname, lb.Name)
			}
			return targetsPerGroup(f, 3)
		})
	})

	t.Run("port change", func(t *testing.T) {
		testenv.UpdateService(t, c, svc, func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, gen.Port("https", corev1.ProtocolTCP, 443, 0))
		})
		testenv.Eventually(t, 30*time.Second, func() error {
			if n := len(f.Listeners()); n != 2 {
				return fmt.Errorf("%d listeners, want 2", n)
			}
			return targetsPerGroup(f, 3)
		})
	})

	t.Run("node change", func(t *testing.T) {
		if err := c.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-c"}}); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, func() error { return targetsPerGroup(f, 2) })
	})

	t.Run("annotation change", func(t *testing.T) {
		testenv.UpdateService(t, c, svc, func(s *corev1.Service) {
			s.Annotations = map[string]string{aws.AnnotationCrossZone: "true", aws.AnnotationHealthCheckInterval: "30"}
		})
		testenv.Eventually(t, 30*time.Second, func() error {
			lb, _ := f.LoadBalancerByName(aws.LoadBalancerName(k))
			if lb.Attributes["load_balancing.cross_zone.enabled"] != "true" {
				return fmt.Errorf("cross-zone %q", lb.Attributes["load_balancing.cross_zone.enabled"])
			}
			for _, g := range f.TargetGroups() {
				if g.HealthCheck.Interval != 30 {
					return fmt.Errorf("group %s interval %d", g.Name, g.HealthCheck.Interval)
				}
			}
			return nil
		})
	})

	t.Run("delete leaves nothing", func(t *testing.T) {
		testenv.DeleteServiceAndWait(t, c, svc)
		testenv.Eventually(t, 30*time.Second, func() error {
			if rs := serviceResources(f); len(rs) != 0 {
				return fmt.Errorf("the fake still holds %+v", rs)
			}
			return nil
		})
	})

	t.Run("killed mid-provision", func(t *testing.T) {
		op.stop(t)
		op = startAWSOperator(t, opCfg)
		// Let three mutating calls through (security group, its rules and,
		// in this fresh operator, the NLB or the cluster's backend group
		// when it is not cached yet), then fail everything as if the
		// operator died.
		f.CrashAfter(3)
		crashed := gen.Service(ns.Name, "crash", gen.WithClass(providers.Class(aws.Name)), gen.ForAPI(),
			gen.WithPorts(gen.Port("http", corev1.ProtocolTCP, 80, 0), gen.Port("https", corev1.ProtocolTCP, 443, 0)))
		if err := c.Create(ctx, crashed); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, func() error {
			for _, call := range f.Calls() {
				if call.Code == "InjectedCrash" {
					return nil
				}
			}
			return fmt.Errorf("no call has failed yet")
		})
		op.stop(t)
		if n := len(serviceResources(f)); n == 0 || n >= 6 {
			t.Fatalf("after the crash the fake holds %d resources, want a partial load balancer", n)
		}
		f.Recover()
		op = startAWSOperator(t, opCfg)
		ck := providers.Key{ClusterID: itCluster, Namespace: ns.Name, Name: "crash"}
		testenv.Eventually(t, 30*time.Second, func() error {
			got := &corev1.Service{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(crashed), got); err != nil {
				return err
			}
			if len(got.Status.LoadBalancer.Ingress) != 1 {
				return fmt.Errorf("no hostname yet")
			}
			return targetsPerGroup(f, 2)
		})
		kinds := map[string]int{}
		for _, r := range serviceResources(f) {
			if !providers.Owns(r.Tags, ck) {
				t.Errorf("%s %s is not tagged for %s", r.Kind, r.ID, ck)
			}
			kinds[r.Kind]++
		}
		want := map[string]int{"loadBalancer": 1, "securityGroup": 1, "targetGroup": 2, "listener": 2}
		if fmt.Sprint(kinds) != fmt.Sprint(want) {
			t.Errorf("after restart: %v, want %v (no duplicates, no leaks)", kinds, want)
		}
		testenv.DeleteServiceAndWait(t, c, crashed)
		testenv.Eventually(t, 30*time.Second, func() error {
			if rs := serviceResources(f); len(rs) != 0 {
				return fmt.Errorf("the fake still holds %+v", rs)
			}
			return nil
		})
	})
	op.stop(t)
}

type awsOperator struct {
	cancel context.CancelFunc
	done   chan error
}

func (o *awsOperator) stop(t *testing.T) {
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

func startAWSOperator(t *testing.T, cfg *rest.Config) *awsOperator {
	t.Helper()
	o := operator.DefaultOptions()
	o.Providers = []string{aws.Name}
	o.ClusterID = itCluster
	o.MetricsAddr, o.ProbeAddr = "0", "0"
	o.NodeBatchWindow = 100 * time.Millisecond
	o.RetryBase, o.RetryMax = 50*time.Millisecond, time.Second
	o.ResyncPeriod = time.Hour
	ac := o.Backends[aws.Name].(*aws.Config)
	ac.Region, ac.MaxAttempts, ac.APIQPS, ac.APIBurst = "us-east-1", 2, 1000, 100
	ctx, cancel := context.WithCancel(context.Background())
	mgr, _, err := operator.New(ctx, cfg, o)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	run := &awsOperator{cancel: cancel, done: make(chan error, 1)}
	go func() { run.done <- mgr.Start(ctx) }()
	t.Cleanup(func() { run.stop(t) })
	return run
}

// targetsPerGroup checks that every target group has n live targets.
func targetsPerGroup(f *awsfake.Fake, n int) error {
	groups := f.TargetGroups()
	if len(groups) == 0 {
		return fmt.Errorf("no target groups")
	}
	for _, g := range groups {
		if got := len(liveTargets(g)); got != n {
			return fmt.Errorf("group %s has %d live targets, want %d", g.Name, got, n)
		}
	}
	return nil
}
