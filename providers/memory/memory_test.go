package memory_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/portico-lb/portico/internal/fault"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/memory"
	"github.com/portico-lb/portico/providers/providertest"
)

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) *providertest.Harness {
		p := memory.New(memory.Options{})
		return &providertest.Harness{
			Provider: p,
			Resources: func() []providertest.Resource {
				var out []providertest.Resource
				for _, r := range p.Resources() {
					out = append(out, providertest.Resource{Kind: r.Kind, ID: r.ID, Tags: r.Tags})
				}
				return out
			},
			MutatingCalls: p.MutatingCalls,
			InjectTransient: func(n int) {
				p.InjectError("*", providers.Retry(errors.New("throttled"), 0), n)
			},
			CrashAfter:   p.CrashAfter,
			Recover:      p.ClearFaults,
			PlantForeign: p.PlantForeign,
		}
	})
}

func TestPoolExhaustion(t *testing.T) {
	p := memory.New(memory.Options{IPv4: mustPrefix("198.51.100.0/30")}) // .1 .2 .3 usable
	var last error
	for i := range 4 {
		d := providertest.DefaultDesired(providers.Key{Namespace: "ns", Name: string(rune('a' + i))}, []string{"n"}, []providers.Port{providertest.TCP(80, 30080)})
		_, last = p.Ensure(t.Context(), d)
		if i < 3 && last != nil {
			t.Fatalf("service %d: %v", i, last)
		}
	}
	var ce *providers.ConfigError
	if !errors.As(last, &ce) || ce.Reason != "PoolExhausted" {
		t.Fatalf("4th service: got %v, want ConfigError PoolExhausted", last)
	}
	if n := len(p.Resources()); n != 3*2 {
		t.Errorf("exhaustion left %d resources, want 6 (3 lbs + 3 listeners)", n)
	}
}

func TestRegisterBeforeDeregister(t *testing.T) {
	p := memory.New(memory.Options{})
	key := providers.Key{Namespace: "ns", Name: "svc"}
	ports := []providers.Port{providertest.TCP(80, 30080)}
	if _, err := p.Ensure(t.Context(), providertest.DefaultDesired(key, []string{"a", "b"}, ports)); err != nil {
		t.Fatal(err)
	}
	n := len(p.Calls())
	if _, err := p.Ensure(t.Context(), providertest.DefaultDesired(key, []string{"b", "c"}, ports)); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, c := range p.Calls()[n:] {
		if memory.IsMutating(c.Op) {
			ops = append(ops, c.Op)
		}
	}
	if len(ops) != 2 || ops[0] != memory.OpRegisterTargets || ops[1] != memory.OpDeregisterTargets {
		t.Fatalf("node swap made %v, want [RegisterTargets DeregisterTargets]", ops)
	}
	if got := p.Targets(key); len(got) != 2 || got[0] != "b" || got[1] != "c" {
		t.Fatalf("targets = %v, want [b c]", got)
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestFaultCoreKinds: the memory backend speaks the fault core's vocabulary,
// so one test idiom injects throttling and crashes into every backend.
func TestFaultCoreKinds(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "c1"})
	ctx := t.Context()
	desired := providertest.DefaultDesired(providers.Key{Namespace: "ns", Name: "web"}, []string{"n"}, []providers.Port{providertest.TCP(80, 30080)})
	p.Inject(fault.Rule{Kind: fault.Throttle, Times: 2, MutatingOnly: true})
	for n := range 2 {
		_, err := p.Ensure(ctx, desired)
		if _, retry := providers.IsRetryable(err); !retry {
			t.Fatalf("ensure %d: %v, want a retryable throttle", n, err)
		}
	}
	if _, err := p.Ensure(ctx, desired); err != nil {
		t.Fatalf("ensure after the throttle: %v", err)
	}
	if s := p.Faults(); s.Injected[fault.Throttle] != 2 || s.Mutating == 0 {
		t.Errorf("fault stats %+v", s)
	}
}
