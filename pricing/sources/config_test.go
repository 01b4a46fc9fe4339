package sources_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/portico-lb/portico/pricing/sources"
)

func TestConfigBuildsASourcePerEnabledCloud(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	var c sources.Config
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if srcs, err := c.Build(context.Background(), []string{"aws", "azure"}); err != nil || len(srcs) != 0 {
		t.Fatalf("off by default: %v, %v", srcs, err)
	}
	if err := fs.Parse([]string{"--live-prices", "--live-price-interval=2h", "--price-stale-after=12h", "--price-currency=EUR"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	srcs, err := c.Build(context.Background(), []string{"local", "azure", "aws"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range srcs {
		names = append(names, s.Kind()+"="+s.Name())
	}
	if got := strings.Join(names, " "); got != "aws-nlb=aws-price-list azure-standard-lb=azure-retail-prices" {
		t.Errorf("sources %q", got)
	}
	opts := c.Options(srcs)
	if opts.Currency != "EUR" || opts.Interval != 2*time.Hour || opts.StaleAfter != 12*time.Hour {
		t.Errorf("options %+v", opts)
	}
	for _, bad := range [][]string{{"--live-price-interval=10s"}, {"--price-stale-after=1h"}, {"--price-currency=eur"}} {
		c2 := c
		fs2 := pflag.NewFlagSet("bad", pflag.ContinueOnError)
		c2.AddFlags(fs2)
		if err := fs2.Parse(append([]string{"--live-prices"}, bad...)); err != nil {
			t.Fatal(err)
		}
		if err := c2.Validate(); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
