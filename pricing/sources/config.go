package sources

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/spf13/pflag"
	"google.golang.org/api/option"

	"github.com/portico-lb/portico/pricing"
)

// Config is the operator's live-price settings (--live-prices and friends).
type Config struct {
	// Enabled turns the live price APIs on; off, only the embedded catalog
	// and the price ConfigMap price.
	Enabled    bool
	Interval   time.Duration
	StaleAfter time.Duration
	Currency   string
	// Endpoints of the price APIs; empty uses each SDK's default (and, for
	// AWS, AWS_ENDPOINT_URL_PRICING).
	AWSEndpoint, AzureURL, GCPEndpoint string
}

// AddFlags registers the flags.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&c.Enabled, "live-prices", false, "Read list prices from each enabled cloud's price API (AWS Price List Query API, Azure Retail Prices API, Cloud Billing Catalog API) instead of only the embedded catalog; when an API cannot be reached or refuses, the embedded prices are used and status.cost.sourceError says why. Permissions: docs/providers/<cloud>.md.")
	fs.DurationVar(&c.Interval, "live-price-interval", 6*time.Hour, "How often live prices are re-read from the price APIs.")
	fs.DurationVar(&c.StaleAfter, "price-stale-after", 24*time.Hour, "Live prices older than this (the API has given no usable answer since) are marked stale in status.cost.stale.")
	fs.StringVar(&c.Currency, "price-currency", "USD", "ISO 4217 currency the live prices must be in; an API answering in another currency sets Priced=False (LivePriceCurrencyMismatch).")
	fs.StringVar(&c.AWSEndpoint, "aws-pricing-endpoint", "", "Endpoint of the AWS Price List Query API; empty uses the SDK's (us-east-1, or AWS_ENDPOINT_URL_PRICING).")
	fs.StringVar(&c.AzureURL, "azure-retail-prices-url", AzureRetailPricesURL, "Base URL of the Azure Retail Prices API.")
	fs.StringVar(&c.GCPEndpoint, "gcp-billing-endpoint", "", "Endpoint of the Cloud Billing Catalog API; empty uses https://cloudbilling.googleapis.com/.")
}

// Validate checks the settings when live prices are on.
func (c *Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	if c.Interval < time.Minute {
		return fmt.Errorf("--live-price-interval %s: want at least 1m (price APIs throttle)", c.Interval)
	}
	if c.StaleAfter < c.Interval {
		return fmt.Errorf("--price-stale-after %s: want at least --live-price-interval (%s)", c.StaleAfter, c.Interval)
	}
	if len(c.Currency) != 3 || strings.ToUpper(c.Currency) != c.Currency {
		return fmt.Errorf("--price-currency %q: want an ISO 4217 code such as USD", c.Currency)
	}
	return nil
}

// builders is the explicit map of live sources by backend name.
var builders = map[string]func(ctx context.Context, c *Config) (pricing.Source, error){
	"aws": func(ctx context.Context, c *Config) (pricing.Source, error) {
		cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(AWSPriceListRegion))
		if err != nil {
			return nil, fmt.Errorf("aws price list: %w", err)
		}
		return NewAWSNLB(cfg, c.AWSEndpoint), nil
	},
	"azure": func(_ context.Context, c *Config) (pricing.Source, error) {
		return &AzureStandardLB{BaseURL: c.AzureURL, Client: &http.Client{Timeout: time.Minute}}, nil
	},
	"gcp": func(ctx context.Context, c *Config) (pricing.Source, error) {
		var opts []option.ClientOption
		if c.GCPEndpoint != "" {
			opts = append(opts, option.WithEndpoint(c.GCPEndpoint))
		}
		return NewGCPForwardingRule(ctx, opts...)
	},
}

// Build returns the live sources of the enabled backends that have one
// (none when live prices are off).
func (c *Config) Build(ctx context.Context, backends []string) ([]pricing.Source, error) {
	if !c.Enabled {
		return nil, nil
	}
	names := append([]string(nil), backends...)
	sort.Strings(names)
	var out []pricing.Source
	for _, b := range names {
		build, ok := builders[b]
		if !ok {
			continue
		}
		s, err := build(ctx, c)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Options turns the settings into pricing.RefresherOptions for sources.
func (c *Config) Options(srcs []pricing.Source) pricing.RefresherOptions {
	return pricing.RefresherOptions{Sources: srcs, Currency: c.Currency, Interval: c.Interval, StaleAfter: c.StaleAfter}
}
