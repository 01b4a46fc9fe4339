package providers_test

import (
	"strings"
	"testing"

	"github.com/portico-lb/portico/providers"
)

// TestDeriveClusterID: two clusters (two kube-system UIDs) get different IDs,
// the same cluster always the same one, and every derived ID is valid in
// every cloud.
func TestDeriveClusterID(t *testing.T) {
	a := providers.DeriveClusterID("6f1d3c1e-2b8a-4f7e-9a51-0c2d4e6f8a10")
	b := providers.DeriveClusterID("0b9e7d5c-3a1f-4e2d-8c6b-5a4f3e2d1c0b")
	if a == b {
		t.Fatalf("two kube-system UIDs derived the same cluster ID %s", a)
	}
	if again := providers.DeriveClusterID("6f1d3c1e-2b8a-4f7e-9a51-0c2d4e6f8a10"); again != a {
		t.Fatalf("derivation is not stable: %s then %s", a, again)
	}
	for _, id := range []string{a, b} {
		if err := providers.ValidateClusterID(id); err != nil {
			t.Errorf("derived ID %s is invalid: %v", id, err)
		}
		if id == "kubernetes" || !strings.HasPrefix(id, providers.DerivedClusterIDPrefix) {
			t.Errorf("derived ID %s", id)
		}
	}
}

func TestValidateClusterID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"prod", true},
		{"k8s-0123456789abcdef", true},
		{"eu-west-1-prod", true},
		{strings.Repeat("a", 63), true},
		{"", false},
		{strings.Repeat("a", 64), false}, // GCP label values: at most 63
		{"Prod", false},                  // GCP label values: lowercase only
		{"team/prod", false},             // AWS subnet tag key kubernetes.io/cluster/<id>, Azure names
		{"prod_eu", false},               // Azure load balancer names allow '_', GCP labels too; RFC 1123 does not: one rule for all
		{"-prod", false},
		{"prod-", false},
		{"prod.eu", false},
		{"pröd", false},
	} {
		err := providers.ValidateClusterID(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateClusterID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
	}
}
