package controllers_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/portico-lb/portico/controllers"
	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/operator"
	"github.com/portico-lb/portico/providers/memory"
)

// TestSlowClassCannotStarveOthers: a backend whose calls hang holds no
// worker past --provider-call-timeout (the expiry is a retryable error on
// the Service), and holds at most its share of the workers meanwhile, so
// another class's Service still gets its address at once.
func TestSlowClassCannotStarveOthers(t *testing.T) {
	const slowClass = "lb.portico.dev/slow"
	slow := memory.New(memory.Options{ClusterID: "test", Class: slowClass})
	slow.SetLatency(time.Hour)
	fast := memory.New(memory.Options{ClusterID: "test"})
	run := startOperator(t, fast, func(o *operator.Options) {
		o.Providers = []string{memory.Name, "slow"}
		o.Instances[slowClass] = slow
		o.Workers = 4
		o.ProviderCallTimeout = 5 * time.Second
	})
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			run.stop(t)
		}
	})
	ns := namespace(t)
	var stuck []*corev1.Service
	for i := range 8 {
		s := gen.Service(ns, fmt.Sprintf("slow-%d", i), gen.WithClass(slowClass), gen.ForAPI())
		create(t, s)
		stuck = append(stuck, s)
	}
	// The operator is at work: Services of the slow class are inside its
	// backend (each waits for Ensuring), and every worker could be too.
	eventually(t, 30*time.Second, func() error {
		inside := 0
		for _, s := range stuck {
			if slices.Contains(eventReasons(t, s), controllers.ReasonEnsuring) {
				inside++
			}
		}
		if inside < 2 {
			return fmt.Errorf("%d Services of the slow class are inside its backend, want 2", inside)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	svc := gen.Service(ns, "fast", gen.WithClass(memoryClass), gen.ForAPI())
	create(t, svc)
	start := time.Now()
	waitReady(t, svc)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the fast class waited %s behind the hanging one", d)
	}
	// The hung calls end at the deadline as retryable errors that say so.
	eventually(t, 30*time.Second, func() error {
		for _, st := range stuck {
			c := meta.FindStatusCondition(get(t, st.DeepCopy()).Status.Conditions, controllers.ConditionReady)
			if c != nil && c.Reason == controllers.ReasonProviderRetrying && strings.Contains(c.Message, "did not finish within 5s") {
				return nil
			}
		}
		return fmt.Errorf("no Service of the slow class reports a timed-out call")
	})

	slow.SetLatency(0)
	for _, s := range stuck {
		waitReady(t, s)
	}
	run.stop(t)
	stopped = true
	run = startOperator(t, fast, func(o *operator.Options) {
		o.Providers = []string{memory.Name, "slow"}
		o.Instances[slowClass] = slow
	})
	defer run.stop(t)
	for _, s := range append(stuck, svc) {
		deleteAndWait(t, s)
	}
}
