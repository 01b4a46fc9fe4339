package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/controllers"
	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/operator"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/memory"
)

func keyOf(svc *corev1.Service) providers.Key {
	return providers.Key{ClusterID: "test", Namespace: svc.Namespace, Name: svc.Name}
}

// waitReady waits for an address and a True Ready condition and returns the Service.
func waitReady(t *testing.T, svc *corev1.Service) *corev1.Service {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		got := get(t, svc.DeepCopy())
		c := meta.FindStatusCondition(got.Status.Conditions, controllers.ConditionReady)
		if len(got.Status.LoadBalancer.Ingress) == 0 || c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("not ready: ingress %v condition %+v", got.Status.LoadBalancer.Ingress, c)
		}
		return nil
	})
	return get(t, svc.DeepCopy())
}

// waitCondition waits until the Ready condition has reason.
func waitCondition(t *testing.T, svc *corev1.Service, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	var cond metav1.Condition
	eventually(t, 20*time.Second, func() error {
		got := get(t, svc.DeepCopy())
		c := meta.FindStatusCondition(got.Status.Conditions, controllers.ConditionReady)
		if c == nil || c.Status != status || c.Reason != reason {
			return fmt.Errorf("condition %+v, want %s/%s", c, status, reason)
		}
		cond = *c
		return nil
	})
	return cond
}

func eventReasons(t *testing.T, svc *corev1.Service) []string {
	t.Helper()
	var list eventsv1.EventList
	if err := env.Client.List(context.Background(), &list, client.InNamespace(svc.Namespace)); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == svc.Name && e.Regarding.Kind == "Service" {
			out = append(out, e.Reason)
		}
	}
	return out
}

func waitEvent(t *testing.T, svc *corev1.Service, reason string) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		if r := eventReasons(t, svc); !slices.Contains(r, reason) {
			return fmt.Errorf("events %v lack %s", r, reason)
		}
		return nil
	})
}

func TestCreateGetsAddress(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	withOperator(t, p)
	ns := namespace(t)
	createNode(t, gen.Node(ns+"-n1", "10.1.0.1"))

	svc := gen.Service(ns, "web", gen.WithClass(memoryClass), gen.ForAPI())
	create(t, svc)
	got := waitReady(t, svc)
	defer deleteAndWait(t, svc)

	if !slices.Contains(got.Finalizers, controllers.Finalizer) {
		t.Errorf("finalizers = %v, want %s", got.Finalizers, controllers.Finalizer)
	}
	ing := got.Status.LoadBalancer.Ingress[0]
	if !strings.HasPrefix(ing.IP, "198.51.100.") || ing.IPMode == nil || *ing.IPMode != corev1.LoadBalancerIPModeVIP {
		t.Errorf("ingress = %+v, want a 198.51.100.x VIP", ing)
	}
	if len(ing.Ports) != 1 || ing.Ports[0].Port != 80 {
		t.Errorf("ingress ports = %+v, want port 80", ing.Ports)
	}
	if got.Spec.Ports[0].NodePort == 0 {
		t.Error("apiserver allocated no nodePort")
	}

	rec := &lbv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}
	eventually(t, 10*time.Second, func() error {
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(rec), rec); err != nil {
			return err
		}
		if rec.Status.Address == "" {
			return errors.New("record has no address yet")
		}
		return nil
	})
	if rec.Status.Class != memoryClass || rec.Status.Address != ing.IP || rec.Status.Ready != "True" {
		t.Errorf("LoadBalancer status = class %q address %q ready %q", rec.Status.Class, rec.Status.Address, rec.Status.Ready)
	}
	if !metav1.IsControlledBy(rec, got) {
		t.Error("LoadBalancer record is not controlled by its Service")
	}
	if rec.Status.ObservedGeneration != got.Generation || rec.Status.LastSyncTime == nil || rec.Status.AppliedHash == "" {
		t.Errorf("record sync fields: gen %d (svc %d) lastSync %v hash %q", rec.Status.ObservedGeneration, got.Generation, rec.Status.LastSyncTime, rec.Status.AppliedHash)
	}
	if rec.Status.Cost == nil || rec.Status.MonthlyCost == "" || rec.Status.Cost.Source == "" {
		t.Errorf("record carries no priced cost: cost %+v monthly %q", rec.Status.Cost, rec.Status.MonthlyCost)
	}
	if c := meta.FindStatusCondition(rec.Status.Conditions, "lb.portico.dev/Priced"); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Priced condition = %+v, want True", c)
	}
	waitEvent(t, svc, controllers.ReasonEnsured)
	// A fast backend costs one Event per change: Ensuring is for slow ones.
	if r := eventReasons(t, svc); slices.Contains(r, controllers.ReasonEnsuring) {
		t.Errorf("events %v: a fast backend got an Ensuring Event too", r)
	}
	eventually(t, 10*time.Second, func() error {
		if ts := p.Targets(keyOf(svc)); !slices.Contains(ts, ns+"-n1") {
			return fmt.Errorf("targets = %v, want to include %s-n1", ts, ns)
		}
		return nil
	})
}

func TestPortUpdate(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	withOperator(t, p)
	ns := namespace(t)
	svc := gen.Service(ns, "ports", gen.WithClass(memoryClass), gen.ForAPI())
	create(t, svc)
	waitReady(t, svc)
	defer deleteAndWait(t, svc)

	got := get(t, svc.DeepCopy())
	got.Spec.Ports = append(got.Spec.Ports, gen.Port("dns", corev1.ProtocolUDP, 53, 0))
	if err := env.Client.Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		s := get(t, svc.DeepCopy())
		if len(s.Status.LoadBalancer.Ingress) == 0 || len(s.Status.LoadBalancer.Ingress[0].Ports) != 2 {
			return fmt.Errorf("ingress ports %+v", s.Status.LoadBalancer.Ingress)
		}
		return nil
	})
	var listeners []string
	for _, r := range p.Resources() {
		if r.Kind == "listener" {
			listeners = append(listeners, r.ID[strings.Index(r.ID, "/")+1:])
		}
	}
	slices.Sort(listeners)
	if fmt.Sprint(listeners) != "[TCP/80 UDP/53]" {
		t.Errorf("listeners = %v, want [TCP/80 UDP/53]", listeners)
	}
}

func TestNodeChanges(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	withOperator(t, p)
	ns := namespace(t)
	n1, n2 := gen.Node(ns+"-a", "10.2.0.1"), gen.Node(ns+"-b", "10.2.0.2")
	createNode(t, n1)
	svc := gen.Service(ns, "nodes", gen.WithClass(memoryClass), gen.ForAPI())
	create(t, svc)
	waitReady(t, svc)
	defer deleteAndWait(t, svc)
	has := func(want ...string) func() error {
		return func() error {
			ts := p.Targets(keyOf(svc))
			for _, w := range want {
				if !slices.Contains(ts, w) {
					return fmt.Errorf("targets %v lack %s", ts, w)
				}
			}
			return nil
		}
	}
	lacks := func(name string) func() error {
		return func() error {
			if ts := p.Targets(keyOf(svc)); slices.Contains(ts, name) {
				return fmt.Errorf("targets %v still hold %s", ts, name)
			}
			return nil
		}
	}

	hb2 := createNode(t, n2) // added
	eventually(t, 10*time.Second, has(n1.Name, n2.Name))

	// n2 dies: its heartbeat stops and the node lifecycle controller marks
	// it Unknown after its grace period.
	hb2.Stop()
	eventually(t, 40*time.Second, lacks(n2.Name))

	ex := get(t, n1.DeepCopy()) // excluded by label
	ex.Labels[model.LabelExcludeFromLB] = ""
	if err := env.Client.Update(context.Background(), ex); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, lacks(n1.Name))

	delete(ex.Labels, model.LabelExcludeFromLB)
	if err := env.Client.Update(context.Background(), ex); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, has(n1.Name))
	if err := env.Client.Delete(context.Background(), ex); err != nil { // removed
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, lacks(n1.Name))
}

// TestNodeChurnIsBatched flips many nodes at once: the load balancer must
// see a handful of updates, not one per node change.
func TestNodeChurnIsBatched(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	withOperator(t, p, func(o *operator.Options) { o.NodeBatchWindow = 500 * time.Millisecond })
	ns := namespace(t)
	svc := gen.Service(ns, "churn", gen.WithClass(memoryClass), gen.ForAPI())
	create(t, svc)
	waitReady(t, svc)
	defer deleteAndWait(t, svc)

	before := len(p.Calls())
	for i := range 20 {
		createNode(t, gen.Node(fmt.Sprintf("%s-c%d", ns, i), fmt.Sprintf("10.3.0.%d", i+1)))
	}
	eventually(t, 10*time.Second, func() error {
		if n := len(p.Targets(keyOf(svc))); n < 20 {
			return fmt.Errorf("%d targets", n)
		}
		return nil
	})
	time.Sleep(time.Second)
	ensures := 0
	for _, c := range p.Calls()[before:] {
		if c.Op == memory.OpEnsure && c.Key == ns+"/churn" {
			ensures++
		}
	}
	if ensures > 4 {
		t.Errorf("20 node creations caused %d Ensure calls; want them batched into at most 4", ensures)
	}
}

func TestClassFiltering(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	withOperator(t, p)
	ns := namespace(t)
	other := gen.Service(ns, "other", gen.WithClass("example.com/other"), gen.ForAPI())
	none := gen.Service(ns, "noclass", gen.ForAPI())
	ours := gen.Service(ns, "ours", gen.WithClass(memoryClass), gen.ForAPI())
	create(t, other, none, ours)
	waitReady(t, ours)
	defer deleteAndWait(t, ours)
	defer deleteAndWait(t, other)
	defer deleteAndWait(t, none)
	time.Sleep(500 * time.Millisecond)
	for _, s := range []*corev1.Service{other, none} {
		got := get(t, s.DeepCopy())
		if len(got.Finalizers) != 0 || len(got.Status.LoadBalancer.Ingress) != 0 || len(got.Status.Conditions) != 0 {
			t.Errorf("%s was touched: finalizers %v ingress %v conditions %v", s.Name, got.Finalizers, got.Status.LoadBalancer.Ingress, got.Status.Conditions)
		}
	}
}

func TestDefaultClassTakesUnclassedServices(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	withOperator(t, p, func(o *operator.Options) { o.DefaultClass = memoryClass })
	ns := namespace(t)
	svc := gen.Service(ns, "unclassed", gen.ForAPI())
	create(t, svc)
	waitReady(t, svc)
	deleteAndWait(t, svc)
	if left := p.Resources(); len(left) != 0 {
		t.Errorf("resources left after delete: %+v", left)
	}
}

func TestTypeChangeCleansUp(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	withOperator(t, p)
	ns := namespace(t)
	svc := gen.Service(ns, "retype", gen.WithClass(memoryClass), gen.ForAPI())
	create(t, svc)
	waitReady(t, svc)
	defer deleteAndWait(t, svc)

	got := get(t, svc.DeepCopy())
	got.Spec.Type = corev1.ServiceTypeClusterIP
	got.Spec.LoadBalancerClass = nil
	got.Spec.ExternalTrafficPolicy = ""
	got.Spec.AllocateLoadBalancerNodePorts = nil
	for i := range got.Spec.Ports {
		got.Spec.Ports[i].NodePort = 0
	}
	if err := env.Client.Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		s := get(t, svc.DeepCopy())
		if len(s.Finalizers) != 0 || len(s.Status.LoadBalancer.Ingress) != 0 || meta.FindStatusCondition(s.Status.Conditions, controllers.ConditionReady) != nil {
			return fmt.Errorf("not cleaned: finalizers %v ingress %v", s.Finalizers, s.Status.LoadBalancer.Ingress)
		}
		return nil
	})
	if left := p.Resources(); len(left) != 0 {
		t.Errorf("resources left after type change: %+v", left)
	}
	err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(svc), &lbv1.LoadBalancer{})
	if err == nil {
		t.Error("LoadBalancer record survives the type change")
	}
	waitEvent(t, svc, controllers.ReasonDeleted)
}

func TestDeleteThroughFinalizer(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	withOperator(t, p)
	ns := namespace(t)
	svc := gen.Service(ns, "gone", gen.WithClass(memoryClass), gen.ForAPI())
	create(t, svc)
	waitReady(t, svc)
	if len(p.Resources()) == 0 {
		t.Fatal("no backend resources after create")
	}
	// The first Delete fails: the Service must stay, finalizer held.
	p.InjectError(memory.OpDeleteListener, providers.Retry(errors.New("throttled"), 0), 2)
	deleteAndWait(t, svc)
	if left := p.Resources(); len(left) != 0 {
		t.Errorf("resources left after delete: %+v", left)
	}
	var deletes int
	for _, c := range p.Calls() {
		if c.Op == memory.OpDelete {
			deletes++
		}
	}
	if deletes < 2 {
		t.Errorf("Delete was called %d times; the injected failure should have forced a retry", deletes)
	}
}

func TestProviderFailureSetsConditionAndRetries(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	p.InjectError(memory.OpCreateLoadBalancer, providers.Retry(errors.New("Throttling: Rate exceeded"), 0), 3)
	withOperator(t, p, func(o *operator.Options) { o.RetryBase = 300 * time.Millisecond })
	ns := namespace(t)
	svc := gen.Service(ns, "flaky", gen.WithClass(memoryClass), gen.ForAPI())
	create(t, svc)
	c := waitCondition(t, svc, metav1.ConditionFalse, controllers.ReasonProviderRetrying)
	if !strings.Contains(c.Message, "Throttling") {
		t.Errorf("condition message %q does not explain the throttling", c.Message)
	}
	waitEvent(t, svc, controllers.ReasonSyncFailed)
	waitReady(t, svc)
	deleteAndWait(t, svc)
}

func TestMalformedAnnotations(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	withOperator(t, p)
	ns := namespace(t)
	bad := []struct{ key, value, reason string }{
		{model.AnnotationScheme, "sideways", model.ReasonInvalidAnnotation},
		{model.AnnotationIP, "300.1.2.3", model.ReasonInvalidAnnotation},
		{model.AnnotationIP, "198.51.100.7,198.51.100.8", model.ReasonInvalidAnnotation},
		{model.AnnotationAllowSharedIP, "not a key!", model.ReasonInvalidAnnotation},
		{model.AnnotationIP, "203.0.113.9", "AddressNotInPool"},
	}
	var svcs []*corev1.Service
	for i, b := range bad {
		svc := gen.Service(ns, fmt.Sprintf("bad-%d", i), gen.WithClass(memoryClass), gen.WithAnnotation(b.key, b.value), gen.ForAPI())
		create(t, svc)
		svcs = append(svcs, svc)
	}
	for i, svc := range svcs {
		c := waitCondition(t, svc, metav1.ConditionFalse, bad[i].reason)
		if !strings.Contains(c.Message, bad[i].value[:3]) {
			t.Errorf("%s: message %q does not quote the bad value", svc.Name, c.Message)
		}
		waitEvent(t, svc, bad[i].reason)
	}
	// The operator keeps working: a good Service still gets its address,
	// and fixing a bad one heals it.
	good := gen.Service(ns, "good", gen.WithClass(memoryClass), gen.ForAPI())
	create(t, good)
	waitReady(t, good)
	fix := get(t, svcs[0].DeepCopy())
	fix.Annotations[model.AnnotationScheme] = "internal"
	if err := env.Client.Update(context.Background(), fix); err != nil {
		t.Fatal(err)
	}
	waitReady(t, svcs[0])
	for _, s := range append(svcs, good) {
		deleteAndWait(t, s)
	}
	if left := p.Resources(); len(left) != 0 {
		t.Errorf("resources left: %+v", left)
	}
}

func TestPodTargetsWithoutNodePorts(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	withOperator(t, p)
	ns := namespace(t)
	svc := gen.Service(ns, "pods", gen.WithClass(memoryClass), gen.WithoutNodePorts(), gen.ForAPI())
	create(t, svc, gen.EndpointSlice(ns, "pods", "http", 8080,
		gen.Endpoint{IP: "10.244.1.5", Node: "n1", Ready: true},
		gen.Endpoint{IP: "10.244.1.6", Node: "n1", Ready: false}))
	got := waitReady(t, svc)
	defer deleteAndWait(t, svc)
	if got.Spec.Ports[0].NodePort != 0 {
		t.Fatalf("nodePort %d allocated despite allocateLoadBalancerNodePorts=false", got.Spec.Ports[0].NodePort)
	}
	if ts := p.Targets(keyOf(svc)); fmt.Sprint(ts) != "[10.244.1.5]" {
		t.Errorf("targets = %v, want only the ready pod [10.244.1.5]", ts)
	}
}

func TestResyncMakesNoMutatingCalls(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	withOperator(t, p, func(o *operator.Options) { o.ResyncPeriod = 300 * time.Millisecond })
	ns := namespace(t)
	svc := gen.Service(ns, "steady", gen.WithClass(memoryClass), gen.ForAPI())
	create(t, svc)
	waitReady(t, svc)
	defer deleteAndWait(t, svc)
	time.Sleep(300 * time.Millisecond)
	before, ensures := p.MutatingCalls(), len(p.Calls())
	time.Sleep(2 * time.Second)
	if got := p.MutatingCalls() - before; got != 0 {
		t.Errorf("resyncs made %d mutating calls, want 0", got)
	}
	resyncs := 0
	for _, c := range p.Calls()[ensures:] {
		if c.Op == memory.OpEnsure {
			resyncs++
		}
	}
	if resyncs < 2 {
		t.Errorf("only %d resync Ensure calls in 2s with a 300ms period; drift would go unnoticed", resyncs)
	}

	// Drift: the listener vanishes behind Portico's back; the next resync repairs it.
	lbName := memory.ResourceName(keyOf(svc))
	p.InjectError("none", nil, 0)
	deleteListenerBehindBack(t, p, svc)
	eventually(t, 5*time.Second, func() error {
		for _, r := range p.Resources() {
			if r.ID == lbName+"/TCP/80" {
				return nil
			}
		}
		return errors.New("listener not repaired")
	})
}

func deleteListenerBehindBack(t *testing.T, p *memory.Provider, svc *corev1.Service) {
	t.Helper()
	d := &providers.LoadBalancer{Key: keyOf(svc), Ports: []providers.Port{{Name: "x", Protocol: providers.UDP, Port: 1, NodePort: 30001}}}
	// Ensure with a different port set deletes TCP/80, as an outside change would.
	if _, err := p.Ensure(context.Background(), d); err != nil {
		t.Fatal(err)
	}
}

// TestCrashBetweenProviderSteps stops the operator after every possible
// number of mutating provider steps and starts a new one: the backend must
// end with exactly one load balancer and listener set, and nothing after delete.
func TestCrashBetweenProviderSteps(t *testing.T) {
	ns := namespace(t)
	for n := range 3 { // create LB, create listener, register targets
		t.Run(fmt.Sprintf("after-%d-steps", n), func(t *testing.T) {
			p := memory.New(memory.Options{ClusterID: "test"})
			node := gen.Node(fmt.Sprintf("%s-crash%d", ns, n), "10.4.0.1")
			createNode(t, node)
			p.CrashAfter(n)
			first := startOperator(t, p)
			svc := gen.Service(ns, fmt.Sprintf("crash-%d", n), gen.WithClass(memoryClass), gen.ForAPI())
			create(t, svc)
			eventually(t, 10*time.Second, func() error {
				for _, c := range p.Calls() {
					if errors.Is(c.Err, memory.ErrCrashed) {
						return nil
					}
				}
				return errors.New("no crash yet")
			})
			first.stop(t)
			p.ClearFaults()

			second := startOperator(t, p)
			defer second.stop(t)
			waitReady(t, svc)
			var lbs, listeners int
			for _, r := range p.Resources() {
				switch r.Kind {
				case "loadBalancer":
					lbs++
				case "listener":
					listeners++
				}
				if !providers.Owns(r.Tags, keyOf(svc)) {
					t.Errorf("resource %s %s lacks ownership tags", r.Kind, r.ID)
				}
			}
			if lbs != 1 || listeners != 1 {
				t.Errorf("after crash at step %d: %d load balancers, %d listeners; want 1 and 1", n, lbs, listeners)
			}
			if ts := p.Targets(keyOf(svc)); !slices.Contains(ts, node.Name) {
				t.Errorf("targets %v lack %s", ts, node.Name)
			}
			deleteAndWait(t, svc)
			if left := p.Resources(); len(left) != 0 {
				t.Errorf("leaked after delete: %+v", left)
			}
		})
	}
}

func TestDeletedRecordIsRebuilt(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	withOperator(t, p)
	ns := namespace(t)
	svc := gen.Service(ns, "rebuild", gen.WithClass(memoryClass), gen.ForAPI())
	create(t, svc)
	waitReady(t, svc)
	defer deleteAndWait(t, svc)
	waitRecord(t, svc)
	rec := &lbv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rebuild"}}
	if err := env.Client.Delete(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		got := &lbv1.LoadBalancer{}
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(rec), got); err != nil {
			return err
		}
		if got.Status.Address == "" {
			return errors.New("record has no address yet")
		}
		return nil
	})
}

// TestSelectorMatchingNoPod: a Service whose selector matches no ready pod
// gets its address (Ready keeps its meaning) and Serving=False/NoEndpoints
// naming the selector (no Event: a new Service usually comes before its
// pods); the condition clears, with a Normal Event, and the record counts the
// endpoint as soon as a ready one appears; losing it again is a Warning.
func TestSelectorMatchingNoPod(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	withOperator(t, p)
	ns := namespace(t)
	svc := gen.Service(ns, "typo", gen.WithClass(memoryClass), gen.ForAPI())
	svc.Spec.Selector = map[string]string{"app": "wbe"}
	create(t, svc)
	defer deleteAndWait(t, svc)
	waitReady(t, svc)
	serving := func(status metav1.ConditionStatus, reason, mentions string) {
		t.Helper()
		eventually(t, 20*time.Second, func() error {
			c := meta.FindStatusCondition(get(t, svc.DeepCopy()).Status.Conditions, controllers.ConditionServing)
			if c == nil || c.Status != status || c.Reason != reason || !strings.Contains(c.Message, mentions) {
				return fmt.Errorf("serving condition %+v, want %s/%s mentioning %q", c, status, reason, mentions)
			}
			return nil
		})
	}
	serving(metav1.ConditionFalse, controllers.ReasonNoEndpoints, "no pod matches the selector app=wbe")

	slice := gen.EndpointSlice(ns, "typo", "http", 8080, gen.Endpoint{IP: "10.2.0.1", Node: "n1", Ready: true})
	create(t, slice)
	serving(metav1.ConditionTrue, controllers.ReasonEndpointsReady, "ready endpoints")
	waitEvent(t, svc, controllers.ReasonEndpointsReady)
	if r := eventReasons(t, svc); slices.Contains(r, controllers.ReasonNoEndpoints) {
		t.Errorf("a new Service without endpoints got a NoEndpoints Event: %v", r)
	}
	eventually(t, 20*time.Second, func() error {
		rec := &lbv1.LoadBalancer{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "typo"}, rec); err != nil {
			return err
		}
		if e := rec.Status.Endpoints; e == nil || e.Ready != 1 || e.Total != 1 || fmt.Sprint(e.Nodes) != "[n1]" {
			return fmt.Errorf("record endpoints %+v", rec.Status.Endpoints)
		}
		return nil
	})
	if c := meta.FindStatusCondition(get(t, svc.DeepCopy()).Status.Conditions, controllers.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Ready changed with endpoints: %+v", c)
	}
	if err := env.Client.Delete(t.Context(), slice); err != nil {
		t.Fatal(err)
	}
	serving(metav1.ConditionFalse, controllers.ReasonNoEndpoints, "no pod matches the selector app=wbe")
	waitEvent(t, svc, controllers.ReasonNoEndpoints)
}

// TestNodeHeartbeatCostsNothing: kubelet heartbeats (and other updates that
// change no load balancer) cost no backend call and no write. Before, the
// first such update panicked the operator (equality.Semantic on netip.Addr).
func TestNodeHeartbeatCostsNothing(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	withOperator(t, p)
	ns := namespace(t)
	n := gen.Node(ns+"-a", "10.3.0.1")
	createNode(t, n)
	svc := gen.Service(ns, "quiet", gen.WithClass(memoryClass), gen.ForAPI())
	create(t, svc)
	defer deleteAndWait(t, svc)
	waitReady(t, svc)
	eventually(t, 10*time.Second, func() error {
		if ts := p.Targets(keyOf(svc)); !slices.Contains(ts, n.Name) {
			return fmt.Errorf("targets %v", ts)
		}
		return nil
	})
	time.Sleep(time.Second) // let the creation's own events settle
	calls, rv := len(p.Calls()), get(t, svc.DeepCopy()).ResourceVersion
	for i := range 20 {
		cur := get(t, n.DeepCopy())
		for j := range cur.Status.Conditions {
			cur.Status.Conditions[j].LastHeartbeatTime = metav1.NewTime(time.Now().Add(time.Duration(i) * time.Second))
		}
		cur.Status.Images = append(cur.Status.Images, corev1.ContainerImage{Names: []string{fmt.Sprintf("img:%d", i)}})
		if err := env.Client.Status().Update(context.Background(), cur); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // more than the node batch window
	if got := len(p.Calls()); got != calls {
		t.Errorf("20 heartbeats caused %d backend calls: %v", got-calls, p.Calls()[calls:])
	}
	if got := get(t, svc.DeepCopy()).ResourceVersion; got != rv {
		t.Errorf("20 heartbeats wrote the Service (resourceVersion %s -> %s)", rv, got)
	}
}

// unhealthyTargets reports every target registered and none healthy yet, as
// a cloud load balancer does until its first health checks pass (an AWS
// target is "initial" for interval x healthy threshold after registering).
type unhealthyTargets struct{ providers.Provider }

func (u unhealthyTargets) Ensure(ctx context.Context, d *providers.LoadBalancer) (*providers.Status, error) {
	st, err := u.Provider.Ensure(ctx, d)
	if st != nil {
		st.Backends.Healthy = 0
	}
	return st, err
}

// TestRecordStatusWithoutHealthyTargets writes the LoadBalancer record on the
// real apiserver while no target is healthy: healthy=0 must be a valid
// status (it once failed with "status.backends.healthy: Required value").
func TestRecordStatusWithoutHealthyTargets(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	withOperator(t, unhealthyTargets{p})
	ns := namespace(t)
	createNode(t, gen.Node(ns+"-n1", "10.1.0.1"))
	svc := gen.Service(ns, "web", gen.WithClass(memoryClass), gen.ForAPI())
	create(t, svc)
	defer deleteAndWait(t, svc)

	rec := &lbv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}
	eventually(t, 15*time.Second, func() error {
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(rec), rec); err != nil {
			return err
		}
		if rec.Status.Address == "" || rec.Status.Backends.Total != 1 {
			return fmt.Errorf("record status address %q backends %+v", rec.Status.Address, rec.Status.Backends)
		}
		return nil
	})
	if rec.Status.Backends.Healthy != 0 || rec.Status.BackendsSummary != "0/1" {
		t.Errorf("backends = %+v (%q), want 0 healthy of 1", rec.Status.Backends, rec.Status.BackendsSummary)
	}
}
