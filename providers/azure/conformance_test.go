package azure

import (
	"testing"

	"github.com/portico-lb/portico/providers/providertest"
)

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) *providertest.Harness {
		return newEnv(t, envOptions{}).harness()
	})
}

// TestConformanceSlowOperations runs the suite again with long-running
// operations that stay InProgress for a while, so every step goes through
// Azure-AsyncOperation and Location polling.
func TestConformanceSlowOperations(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	providertest.Run(t, func(t *testing.T) *providertest.Harness {
		return newEnv(t, envOptions{latency: 3_000_000}).harness() // 3ms
	})
}
