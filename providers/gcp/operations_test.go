package gcp_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/portico-lb/portico/internal/fault"
	"github.com/portico-lb/portico/providers"
)

// TestOperationFailuresAreClassified: Compute Engine accepts a mutation and
// reports its failure in the Operation (error.errors[].code). Portico sorts
// those failures into retryable (retried in place, then a RetryError), quota
// (a condition naming the quota) and configuration errors, instead of
// reading the operation's bare HTTP status (a quota failure's 403 used to
// become AccessDenied).
func TestOperationFailuresAreClassified(t *testing.T) {
	t.Run("quota names the quota", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		e.fake.Faults().FailOperations(fault.OpRule{Kind: fault.OpQuota, Times: -1, Op: "insert forwardingRules"})
		_, err := e.p.Ensure(t.Context(), desired(key("quota"), []string{"node-a"}, ports(80)))
		var ce *providers.ConfigError
		if !errors.As(err, &ce) || ce.Reason != "QuotaExceeded" || !strings.Contains(ce.Message, "FORWARDING_RULES") {
			t.Fatalf("got %v, want ConfigError QuotaExceeded naming FORWARDING_RULES", err)
		}
	})
	for _, kind := range []fault.Kind{fault.OpInternal, fault.OpSuperseded, fault.OpConflict} {
		t.Run(string(kind)+" once is survived", func(t *testing.T) {
			e := newEnv(t, envOptions{})
			e.fake.Faults().FailOperations(fault.OpRule{Kind: kind, Times: 1, Op: "insert backendServices"})
			if _, err := e.p.Ensure(t.Context(), desired(key("once"), []string{"node-a"}, ports(80))); err != nil {
				t.Fatalf("one failed operation: %v", err)
			}
			if e.fake.Faults().Stats().OperationsFailed != 1 {
				t.Fatal("the operation failure was not injected")
			}
		})
	}
	t.Run("a lasting conflict on delete is retryable", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		k := key("inuse")
		if _, err := e.p.Ensure(t.Context(), desired(k, []string{"node-a"}, ports(80))); err != nil {
			t.Fatal(err)
		}
		e.fake.Faults().FailOperations(fault.OpRule{Kind: fault.OpConflict, Times: -1, Op: "delete backendServices"})
		err := e.p.Delete(t.Context(), k)
		if _, ok := providers.IsRetryable(err); !ok {
			t.Fatalf("got %v, want RetryError", err)
		}
		e.fake.Faults().ClearOperations()
		if err := e.p.Delete(t.Context(), k); err != nil {
			t.Fatal(err)
		}
		if ids := e.ids(); len(ids) != 0 {
			t.Errorf("left behind: %v", ids)
		}
	})
	t.Run("a lasting internal error is retryable", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		e.fake.Faults().FailOperations(fault.OpRule{Kind: fault.OpInternal, Times: -1, Op: "insert healthChecks"})
		start := time.Now()
		_, err := e.p.Ensure(t.Context(), desired(key("internal"), []string{"node-a"}, ports(80)))
		if _, ok := providers.IsRetryable(err); !ok {
			t.Fatalf("got %v, want RetryError", err)
		}
		if time.Since(start) > 20*time.Second {
			t.Errorf("took %s", time.Since(start))
		}
	})
}
