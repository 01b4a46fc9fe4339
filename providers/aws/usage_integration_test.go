package aws_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/operator"
	"github.com/portico-lb/portico/internal/testenv"
	"github.com/portico-lb/portico/pricing"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/aws"
	"github.com/portico-lb/portico/providers/aws/awsfake"
	"github.com/portico-lb/portico/usage"
)

// TestUsageOnControlPlane runs the operator with --usage-metrics against
// the AWS fake and the CloudWatch fake: a refused reading is a False
// UsageMeasured condition and an Event while the cost keeps the estimate;
// a good reading of a load balancer created this hour waits for its first
// whole hour (UsagePending), the estimate standing meanwhile.
func TestUsageOnControlPlane(t *testing.T) {
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
	f := awsfake.New(awsfake.Options{})
	t.Cleanup(f.Close)
	f.SeedNetwork(itCluster)
	cw := awsfake.NewCloudWatch()
	t.Cleanup(cw.Close)
	cw.Deny(true)
	t.Setenv("AWS_ENDPOINT_URL", f.URL())
	t.Setenv("AWS_ENDPOINT_URL_CLOUDWATCH", cw.URL())
	t.Setenv("AWS_ACCESS_KEY_ID", awsfake.TestAccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", awsfake.TestSecretAccessKey)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")

	ctx := context.Background()
	c := env.Client
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "aws-usage"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	testenv.CreateNode(t, c, gen.Node("node-a", "10.0.0.10", gen.WithProviderID("aws:///us-east-1a/"+f.InstanceID("node-a"))))
	op := startUsageOperator(t, opCfg)
	svc := gen.Service(ns.Name, "web", gen.WithClass(providers.Class(aws.Name)), gen.ForAPI())
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	record := func() (*lbv1.LoadBalancer, error) {
		lb := &lbv1.LoadBalancer{}
		return lb, c.Get(ctx, client.ObjectKeyFromObject(svc), lb)
	}

	// Refused: the condition and an Event say so; the cost is the
	// estimate, never zero.
	testenv.Eventually(t, 30*time.Second, func() error {
		lb, err := record()
		if err != nil {
			return err
		}
		cond := meta.FindStatusCondition(lb.Status.Conditions, usage.ConditionType)
		if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != usage.ReasonUnavailable || !strings.Contains(cond.Message, "AccessDenied") {
			return fmt.Errorf("usage condition %+v", cond)
		}
		if cost := lb.Status.Cost; cost == nil || cost.Hourly != "0.0285" || cost.Usage != nil {
			return fmt.Errorf("cost %+v, want the list price with the NLCU estimate", cost)
		}
		if p := meta.FindStatusCondition(lb.Status.Conditions, pricing.ConditionType); p == nil || p.Status != metav1.ConditionTrue {
			return fmt.Errorf("priced condition %+v", p)
		}
		var list eventsv1.EventList
		if err := c.List(ctx, &list, client.InNamespace(ns.Name)); err != nil {
			return err
		}
		var reasons []string
		for _, e := range list.Items {
			reasons = append(reasons, e.Reason)
		}
		if !slices.Contains(reasons, usage.ReasonUnavailable) {
			return fmt.Errorf("events %v lack %s", reasons, usage.ReasonUnavailable)
		}
		return nil
	})

	// Permitted, with traffic over the last day: a restarted operator
	// reads it. The Service was created within the current hour, which no
	// whole hour of usage covers yet, so the estimate stands and the
	// condition says so (Unknown, UsagePending) rather than pricing hours
	// before the load balancer existed; pricing a reading is covered by
	// controllers' TestPriceWithUsage and pricing's TestPriceUsage.
	lb, _ := record()
	arn := ""
	for _, r := range lb.Status.Resources {
		if r.Kind == aws.KindLoadBalancer {
			arn = r.ID
		}
	}
	dim := arn[strings.Index(arn, ":loadbalancer/")+len(":loadbalancer/"):]
	day, _ := usage.Windows(time.Now())
	for h := day[0].Add(-2 * time.Hour); h.Before(day[1].Add(2 * time.Hour)); h = h.Add(time.Hour) {
		for m := 0; m < 60; m += 10 {
			cw.Put("AWS/NetworkELB", "ConsumedLCUs", map[string]string{"LoadBalancer": dim}, h.Add(time.Duration(m)*time.Minute), 1.25)
		}
	}
	cw.Deny(false)
	op.stop(t)
	refused := len(cw.Calls())
	startUsageOperator(t, opCfg)
	testenv.Eventually(t, 60*time.Second, func() error {
		read := false
		for _, c := range cw.Calls()[refused:] {
			read = read || c.Code == ""
		}
		if !read {
			return fmt.Errorf("no successful GetMetricData since access was granted")
		}
		lb, err := record()
		if err != nil {
			return err
		}
		cond := meta.FindStatusCondition(lb.Status.Conditions, usage.ConditionType)
		cost := lb.Status.Cost
		if cond != nil && cond.Status == metav1.ConditionTrue && cost != nil && cost.Usage != nil {
			// The hour turned during the test: one whole hour at 1.25
			// NLCU is measured, 0.0075 an hour on top of the NLB hour.
			if cost.Usage.Hourly != "0.0075" || cost.Hourly != "0.03" {
				return fmt.Errorf("usage %+v, hourly %s", cost.Usage, cost.Hourly)
			}
			return nil
		}
		if cond == nil || cond.Status != metav1.ConditionUnknown || cond.Reason != usage.ReasonPending || !strings.Contains(cond.Message, "no whole hour") {
			return fmt.Errorf("usage condition %+v", cond)
		}
		if cost == nil || cost.Hourly != "0.0285" || cost.Fixed != "0.0225" || cost.Usage != nil {
			return fmt.Errorf("cost %+v, want the estimate until a whole hour is measured", cost)
		}
		return nil
	})
}

func startUsageOperator(t *testing.T, cfg *rest.Config) *awsOperator {
	t.Helper()
	o := operator.DefaultOptions()
	o.Providers = []string{aws.Name}
	o.ClusterID = itCluster
	o.MetricsAddr, o.ProbeAddr = "0", "0"
	o.NodeBatchWindow = 100 * time.Millisecond
	o.RetryBase, o.RetryMax = 50*time.Millisecond, time.Second
	// The status shows a new reading at the next resync.
	o.ResyncPeriod = time.Second
	o.UsageMetrics.Enabled = true
	o.UsageMetrics.Interval = time.Hour
	ac := o.Backends[aws.Name].(*aws.Config)
	ac.Region, ac.MaxAttempts, ac.APIQPS, ac.APIBurst = "us-east-1", 1, 1000, 100
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
