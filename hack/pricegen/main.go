// Command pricegen regenerates Portico's embedded price files
// (pricing/data/<cloud>-<date>.yaml) from each cloud's price API, for a
// maintainer with access to them:
//
//	go run ./hack/pricegen -cloud aws -out pricing/data
//	go run ./hack/pricegen -cloud azure -out pricing/data
//	go run ./hack/pricegen -cloud gcp -out pricing/data
//
// It reads every region of pricing.PublicRegions for the cloud's product,
// writes one file in which regions with the same prices share an entry,
// each "documented" by the API and the date, and lists on stderr the
// regions the API did not price (the file then lacks them, and the
// catalog's coverage test fails until they are resolved). Credentials: the
// AWS SDK's default chain (pricing:GetProducts), Application Default
// Credentials or -gcp-api-key for the Cloud Billing Catalog API, none for
// Azure. Remove the older file of the same cloud after checking the diff.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"google.golang.org/api/option"

	"github.com/portico-lb/portico/pricing"
	"github.com/portico-lb/portico/pricing/sources"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "pricegen:", err)
		os.Exit(1)
	}
}

type options struct {
	cloud, out, date, currency         string
	awsEndpoint, azureURL, gcpEndpoint string
	gcpAPIKey                          string
	regions                            string
	gcpNoAuth                          bool
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("pricegen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.cloud, "cloud", "", "aws, azure or gcp")
	fs.StringVar(&o.out, "out", "pricing/data", "directory to write <cloud>-<date>.yaml into")
	fs.StringVar(&o.date, "date", time.Now().UTC().Format(time.DateOnly), "date the prices are read (YYYY-MM-DD), in the file's name and asOf")
	fs.StringVar(&o.currency, "currency", "USD", "ISO 4217 currency")
	fs.StringVar(&o.regions, "regions", "", "comma-separated regions instead of every public region of the cloud")
	fs.StringVar(&o.awsEndpoint, "aws-endpoint", "", "AWS Price List Query API endpoint (default: the SDK's)")
	fs.StringVar(&o.azureURL, "azure-url", sources.AzureRetailPricesURL, "Azure Retail Prices API base URL")
	fs.StringVar(&o.gcpEndpoint, "gcp-endpoint", "", "Cloud Billing Catalog API endpoint (default: the client's)")
	fs.StringVar(&o.gcpAPIKey, "gcp-api-key", "", "API key for the Cloud Billing Catalog API (default: Application Default Credentials)")
	fs.BoolVar(&o.gcpNoAuth, "gcp-no-auth", false, "call the Cloud Billing Catalog API without credentials (tests)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := time.Parse(time.DateOnly, o.date); err != nil {
		return fmt.Errorf("-date %q: want YYYY-MM-DD", o.date)
	}
	src, kind, url, err := o.source(ctx)
	if err != nil {
		return err
	}
	regions := pricing.PublicRegions[kind]
	if o.regions != "" {
		regions = strings.Split(o.regions, ",")
	}
	var quotes map[string]*pricing.Quote
	var failed map[string]error
	if g, ok := src.(*sources.GCPForwardingRule); ok {
		quotes, failed, err = gcpQuotes(ctx, g, regions, o.currency)
		if err != nil {
			return err
		}
	} else {
		quotes, failed = pricing.FetchAll(ctx, src, regions, o.currency)
	}
	for _, r := range sortedKeys(failed) {
		fmt.Fprintf(stderr, "pricegen: %s: %s not priced: %v\n", o.cloud, r, failed[r])
	}
	if len(quotes) == 0 {
		return fmt.Errorf("%s priced no region", src.Name())
	}
	base, err := pricing.Embedded()
	if err != nil {
		return err
	}
	name := o.cloud + "-" + o.date
	data, err := pricing.GenerateFile(pricing.GenerateOptions{
		Name: name, AsOf: o.date, Currency: o.currency, Kind: kind,
		SourceName: src.Name(), SourceURL: url, Quotes: quotes, Template: base,
	})
	if err != nil {
		return err
	}
	path := filepath.Join(o.out, name+".yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "pricegen: wrote %s: %d regions priced, %d not\n", path, len(quotes), len(failed))
	if len(failed) > 0 {
		return fmt.Errorf("%d regions not priced", len(failed))
	}
	return nil
}

func (o *options) source(ctx context.Context) (pricing.Source, string, string, error) {
	switch o.cloud {
	case "aws":
		cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(sources.AWSPriceListRegion))
		if err != nil {
			return nil, "", "", err
		}
		return sources.NewAWSNLB(cfg, o.awsEndpoint), "aws-nlb", "https://aws.amazon.com/elasticloadbalancing/pricing/", nil
	case "azure":
		return &sources.AzureStandardLB{BaseURL: o.azureURL}, "azure-standard-lb", "https://azure.microsoft.com/en-us/pricing/details/load-balancer/", nil
	case "gcp":
		var opts []option.ClientOption
		if o.gcpEndpoint != "" {
			opts = append(opts, option.WithEndpoint(o.gcpEndpoint))
		}
		if o.gcpAPIKey != "" {
			opts = append(opts, option.WithAPIKey(o.gcpAPIKey))
		}
		if o.gcpNoAuth {
			opts = append(opts, option.WithoutAuthentication())
		}
		s, err := sources.NewGCPForwardingRule(ctx, opts...)
		return s, "gcp-forwarding-rule", "https://cloud.google.com/load-balancing/pricing", err
	}
	return nil, "", "", fmt.Errorf("-cloud %q: want aws, azure or gcp", o.cloud)
}

// gcpQuotes lists the catalog once and picks every region from it.
func gcpQuotes(ctx context.Context, g *sources.GCPForwardingRule, regions []string, currency string) (map[string]*pricing.Quote, map[string]error, error) {
	skus, err := g.List(ctx, currency)
	if err != nil {
		return nil, nil, err
	}
	quotes, failed := map[string]*pricing.Quote{}, map[string]error{}
	for _, r := range regions {
		q, err := sources.QuoteGCP(skus, r, currency)
		if err != nil {
			failed[r] = err
			continue
		}
		quotes[r] = q
	}
	return quotes, failed, nil
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
