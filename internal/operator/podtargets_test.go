package operator

import (
	"testing"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/aws"
	"github.com/portico-lb/portico/providers/azure"
	"github.com/portico-lb/portico/providers/gcp"
	"github.com/portico-lb/portico/providers/local"
	"github.com/portico-lb/portico/providers/memory"
)

// TestBackendsDeclarePodTargets: allocateLoadBalancerNodePorts: false works
// exactly on the backends that can send traffic to pod IPs (local: the
// forwarder sends to endpoints; AWS: ip target groups; Azure: IP-based
// backend pools); the others get the NodePortsRequired condition. Every
// backend the operator wires is listed, so a new one must decide.
func TestBackendsDeclarePodTargets(t *testing.T) {
	want := map[string]struct {
		p    providers.Provider
		pods bool
	}{
		local.Name:  {(*local.Provider)(nil), true},
		aws.Name:    {(*aws.Provider)(nil), true},
		azure.Name:  {(*azure.Provider)(nil), true},
		memory.Name: {(*memory.Provider)(nil), true},
		gcp.Name:    {(*gcp.Provider)(nil), false},
	}
	for name := range backends() {
		w, ok := want[name]
		if !ok {
			t.Errorf("backend %s: say whether it can target pods", name)
			continue
		}
		pt, ok := w.p.(providers.PodTargeter)
		if got := ok && pt.TargetsPods(); got != w.pods {
			t.Errorf("backend %s targets pods = %v, want %v", name, got, w.pods)
		}
	}
}

// TestPriceConfigMapFollowsInstallNamespace: installed in another namespace
// (helm install -n lb), the operator reads its price ConfigMap there.
func TestPriceConfigMapFollowsInstallNamespace(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "lb")
	if got := DefaultOptions().PriceConfigMap; got != "lb/portico-prices" {
		t.Errorf("price ConfigMap %q, want lb/portico-prices", got)
	}
	t.Setenv("POD_NAMESPACE", "")
	if got := DefaultOptions().PriceConfigMap; got != "portico-system/portico-prices" {
		t.Errorf("price ConfigMap %q outside a pod, want portico-system/portico-prices", got)
	}
}
