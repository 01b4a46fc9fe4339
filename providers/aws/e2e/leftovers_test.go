package e2e_test

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"golang.org/x/time/rate"

	"github.com/portico-lb/portico/providers"
	awsp "github.com/portico-lb/portico/providers/aws"
	"github.com/portico-lb/portico/providers/aws/awsfake"
	"github.com/portico-lb/portico/providers/aws/e2e"
	"github.com/portico-lb/portico/providers/providertest"
)

func TestLeftovers(t *testing.T) {
	f := awsfake.New(awsfake.Options{})
	t.Cleanup(f.Close)
	f.SeedNetwork("run1")
	cfg := f.SDKConfig(awsfake.SDKOptions{})
	elb, ec := elbv2.NewFromConfig(cfg), ec2.NewFromConfig(cfg)
	p, err := awsp.New(awsp.Options{ClusterID: "run1", AWS: cfg, RateLimit: rate.Inf, RetryAfter: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.PlantLoadBalancer("foreign", map[string]string{"team": "payments"})
	f.PlantLoadBalancer("other-run", providers.OwnershipTags(providers.Key{ClusterID: "run2", Namespace: "e2e", Name: "web"}))

	list := func(shared bool) []e2e.Leftover {
		t.Helper()
		out, err := e2e.Leftovers(t.Context(), elb, ec, "run1", shared)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := list(true); len(got) != 0 {
		t.Fatalf("before the run: %v", got)
	}
	k := providers.Key{ClusterID: "run1", Namespace: "e2e", Name: "web"}
	d := providertest.DefaultDesired(k, []string{"n1"}, []providers.Port{providertest.TCP(80, 30080)})
	d.Nodes[0].ProviderID = "aws:///us-east-1a/" + f.InstanceID("n1")
	if _, err := p.Ensure(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, l := range list(false) {
		kinds[l.Kind]++
	}
	if kinds["loadBalancer"] != 1 || kinds["targetGroup"] != 1 || kinds["securityGroup"] != 1 {
		t.Errorf("after create: %v, want the run's load balancer, target group and security group (not the foreign or other run's)", kinds)
	}
	if got := len(list(true)); got != len(list(false))+1 {
		t.Errorf("with shared: %d, want the backend security group too", got)
	}
	for range 10 {
		if err = p.Delete(t.Context(), k); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := list(false); len(got) != 0 {
		t.Errorf("after delete: %v left", got)
	}
}
