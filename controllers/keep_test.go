package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
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

const otherClass = "lb.portico.dev/other"

// deletes counts the backend's load-balancer deletions.
func deletes(p *memory.Provider) int {
	n := 0
	for _, c := range p.Calls() {
		if c.Op == memory.OpDeleteLoadBalancer {
			n++
		}
	}
	return n
}

// kept waits until svc reports that its load balancer is kept although its
// class is not served, with its finalizer and address in place, and
// returns the condition's message.
func kept(t *testing.T, svc *corev1.Service, ingress, mentions string) string {
	t.Helper()
	var msg string
	eventually(t, 20*time.Second, func() error {
		got := get(t, svc.DeepCopy())
		c := meta.FindStatusCondition(got.Status.Conditions, controllers.ConditionReady)
		if c == nil || c.Reason != controllers.ReasonClassNotServed || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, mentions) {
			return fmt.Errorf("condition %+v, want %s mentioning %q", c, controllers.ReasonClassNotServed, mentions)
		}
		if !controllersHasFinalizer(got) || len(got.Status.LoadBalancer.Ingress) == 0 || got.Status.LoadBalancer.Ingress[0].IP != ingress {
			return fmt.Errorf("finalizers %v ingress %v", got.Finalizers, got.Status.LoadBalancer.Ingress)
		}
		msg = c.Message
		return nil
	})
	return msg
}

func controllersHasFinalizer(s *corev1.Service) bool {
	for _, f := range s.Finalizers {
		if f == controllers.Finalizer {
			return true
		}
	}
	return false
}

// TestConfigurationChangeNeverDeletes: a load balancer is deleted only when
// its Service is deleted or stops being type LoadBalancer. Restarting the
// operator without --default-class, with another default, or with the
// backend disabled keeps every load balancer, finalizer and address, and
// says why and how to release it.
func TestConfigurationChangeNeverDeletes(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	other := memory.New(memory.Options{ClusterID: "test", Class: otherClass})
	withDefault := func(class string, enabled ...providers.Provider) func(*operator.Options) {
		return func(o *operator.Options) {
			o.DefaultClass = class
			o.Providers, o.Instances = nil, map[string]providers.Provider{}
			for _, e := range enabled {
				o.Providers = append(o.Providers, strings.TrimPrefix(e.Class(), providers.ClassPrefix))
				o.Instances[e.Class()] = e
			}
		}
	}
	ns := namespace(t)
	byDefault := gen.Service(ns, "bydefault", gen.ForAPI())
	explicit := gen.Service(ns, "explicit", gen.WithClass(memoryClass), gen.ForAPI())
	unrecorded := gen.Service(ns, "unrecorded", gen.WithClass(memoryClass), gen.ForAPI())

	run := startOperator(t, p, withDefault(memoryClass, p))
	create(t, byDefault, explicit, unrecorded)
	addr := map[string]string{}
	for _, s := range []*corev1.Service{byDefault, explicit, unrecorded} {
		addr[s.Name] = waitReady(t, s).Status.LoadBalancer.Ingress[0].IP
		waitRecord(t, s)
	}
	run.stop(t)
	resources := len(p.Resources())

	t.Run("restarted without --default-class", func(t *testing.T) {
		run := startOperator(t, p, withDefault("", p))
		defer run.stop(t)
		msg := kept(t, byDefault, addr[byDefault.Name], "no longer set")
		for _, want := range []string{"--default-class", "kept", model.AnnotationRelease} {
			if !strings.Contains(msg, want) {
				t.Errorf("message %q does not mention %q", msg, want)
			}
		}
		waitEvent(t, byDefault, controllers.ReasonClassNotServed)
		// The explicitly classed Services are still served.
		waitReady(t, explicit)
	})
	t.Run("restarted with another default", func(t *testing.T) {
		run := startOperator(t, p, withDefault(otherClass, p, other))
		defer run.stop(t)
		kept(t, byDefault, addr[byDefault.Name], "which is now "+otherClass)
		if n := len(other.Resources()); n != 0 {
			t.Errorf("the new default class built %d load balancers for a Service another class serves", n)
		}
	})
	t.Run("restarted with the backend disabled", func(t *testing.T) {
		// Someone deletes a record by hand while the operator is down, and
		// the class named beside the finalizer with it (as on a Service
		// served before that name existed).
		if err := env.Client.Delete(context.Background(), &lbv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: unrecorded.Name}}); err != nil {
			t.Fatal(err)
		}
		u := get(t, unrecorded.DeepCopy())
		delete(u.Annotations, model.AnnotationBuiltClass)
		if err := env.Client.Update(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		run := startOperator(t, other, withDefault("", other))
		defer run.stop(t)
		kept(t, explicit, addr[explicit.Name], "does not run")
		// No record says which class built it: the finalizer stays, since
		// the class it asks for does not run here.
		kept(t, unrecorded, addr[unrecorded.Name], "no LoadBalancer record")
		time.Sleep(time.Second)
		if got := get(t, unrecorded.DeepCopy()); !controllersHasFinalizer(got) {
			t.Error("finalizer removed while the class that built the load balancer is disabled")
		}
	})
	if n := deletes(p); n != 0 || len(p.Resources()) != resources {
		t.Fatalf("configuration changes deleted %d load balancers (resources %d -> %d)", n, resources, len(p.Resources()))
	}

	t.Run("explicit release", func(t *testing.T) {
		run := startOperator(t, p, withDefault("", p))
		defer run.stop(t)
		kept(t, byDefault, addr[byDefault.Name], "no longer set")
		got := get(t, byDefault.DeepCopy())
		got.Annotations = map[string]string{model.AnnotationRelease: "true"}
		if err := env.Client.Update(context.Background(), got); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, func() error {
			s := get(t, byDefault.DeepCopy())
			if controllersHasFinalizer(s) || len(s.Status.LoadBalancer.Ingress) != 0 {
				return fmt.Errorf("not released: finalizers %v ingress %v", s.Finalizers, s.Status.LoadBalancer.Ingress)
			}
			return nil
		})
		if deletes(p) == 0 {
			t.Error("the released load balancer was not deleted")
		}
		waitEvent(t, byDefault, controllers.ReasonDeleted)
	})

	run = startOperator(t, p, withDefault(memoryClass, p))
	defer run.stop(t)
	for _, s := range []*corev1.Service{byDefault, explicit, unrecorded} {
		if err := env.Client.Delete(context.Background(), s); client.IgnoreNotFound(err) != nil {
			t.Fatal(err)
		}
		deleteAndWait(t, s)
	}
}
