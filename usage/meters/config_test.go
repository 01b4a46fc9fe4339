package meters_test

import (
	"context"
	"testing"
	"time"

	"github.com/spf13/pflag"

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
	ms, err := c.Build(context.Background(), []string{"local", "aws", "memory"})
	if err != nil || len(ms) != 1 || ms[0].Kind() != "aws-nlb" {
		t.Fatalf("Build: %v, %v; want the AWS NLB meter alone", ms, err)
	}
	if m := ms[0].(*meters.AWSNLB); m.Region != "eu-west-1" {
		t.Errorf("meter region %q, want the AWS backend's", m.Region)
	}
}
