package meters_test

import (
	"context"
	"testing"
	"time"

	"github.com/spf13/pflag"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/portico-lb/portico/usage"

	"github.com/portico-lb/portico/usage/meters"
)

func TestConfig(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	var c meters.Config
	fs := pflag.NewFlagSet("", pflag.ContinueOnError)
	c.AddFlags(fs)
	if c.Enabled {
		t.Fatal("usage metrics are on by default; they must be off unless permitted")
	}
	if ms, err := c.Build(context.Background(), []string{"aws"}); err != nil || len(ms) != 0 {
		t.Fatalf("off: %v, %v; want no meters", ms, err)
	}
	if err := fs.Parse([]string{"--usage-metrics", "--usage-metrics-interval=1m"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil {
		t.Error("an interval of 1m was accepted")
	}
	c.Interval, c.AWSRegion = time.Hour, "eu-west-1"
	ms, err := c.Build(context.Background(), []string{"aws", "memory"})
	if err != nil || len(ms) != 1 || ms[0].Kind() != "aws-nlb" {
		t.Fatalf("Build: %v, %v; want the AWS NLB meter alone", ms, err)
	}
	if m := ms[0].(*meters.AWSNLB); m.Region != "eu-west-1" {
		t.Errorf("meter region %q, want the AWS backend's", m.Region)
	}
}

func TestConfigLocal(t *testing.T) {
	lease := func(node, value string) *coordinationv1.Lease {
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "portico-system", Name: "portico-forwarder-" + node},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &node}}
		if value != "" {
			l.Annotations = map[string]string{usage.AnnotationForwarderBytes: value}
		}
		return l
	}
	other := lease("c", "x")
	other.Namespace = "default"
	cl := fake.NewClientBuilder().WithObjects(lease("a", "snap-a"), lease("b", ""), other,
		&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "portico-system", Name: "portico-leader"}}).Build()
	c := meters.Config{Enabled: true, Interval: time.Hour, Leases: cl, Namespace: "portico-system"}
	ms, err := c.Build(context.Background(), []string{"local"})
	if err != nil || len(ms) != 1 || ms[0].Kind() != "local-address" {
		t.Fatalf("Build: %v, %v; want the local byte meter", ms, err)
	}
	lb := ms[0].(*meters.LocalBytes)
	got, err := lb.Snapshots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["a"] != "snap-a" {
		t.Errorf("snapshots %v, want node a's only (b has none, c is in another namespace)", got)
	}
	if _, ok := ms[0].(manager.Runnable); !ok {
		t.Error("the local meter does not poll on its own: bytes would land in the hour of the next reading")
	}
	c.Leases = nil
	if _, err := c.Build(context.Background(), []string{"local"}); err == nil {
		t.Error("a local meter without a Lease reader was built")
	}
}
