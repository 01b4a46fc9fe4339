// Package sources holds the live price APIs Portico reads list prices from,
// one pricing.Source each: the AWS Price List Query API, the Azure Retail
// Prices API and the Google Cloud Billing Catalog API. Each maps the cloud's
// SKUs for the product Portico builds onto the units of its cost inputs
// (docs/cost.md) and reports bad data as a pricing.Error with a LivePrice*
// reason, an API it cannot reach or may not call as a plain error.
package sources

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awspricing "github.com/aws/aws-sdk-go-v2/service/pricing"
	"github.com/aws/aws-sdk-go-v2/service/pricing/types"

	"github.com/portico-lb/portico/pricing"
)

// AWSPriceListAPI is the subset of the AWS Price List Query API used.
type AWSPriceListAPI interface {
	GetProducts(ctx context.Context, in *awspricing.GetProductsInput, optFns ...func(*awspricing.Options)) (*awspricing.GetProductsOutput, error)
}

var _ AWSPriceListAPI = (*awspricing.Client)(nil)

// AWSPriceListRegion is where the Price List Query API is served (also
// ap-south-1 and eu-central-1); its prices cover every region.
// https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/using-price-list-query-api.html
const AWSPriceListRegion = "us-east-1"

// AWSNLB prices kind aws-nlb: the NLB hour and NLCU-hour (service code
// AWSELB, product family "Load Balancer-Network", usage types
// <prefix>-LoadBalancerUsage and <prefix>-LCUUsage) and the in-use public
// IPv4 address hour (AmazonVPC, <prefix>-PublicIPv4:InUseAddress).
type AWSNLB struct {
	API AWSPriceListAPI
}

// NewAWSNLB builds the source on an SDK config; the Price List endpoint
// follows the SDK's own settings (AWS_ENDPOINT_URL_PRICING,
// endpoint_url in the shared config) or baseEndpoint when set.
func NewAWSNLB(cfg aws.Config, baseEndpoint string) *AWSNLB {
	cfg = cfg.Copy()
	cfg.Region = AWSPriceListRegion
	return &AWSNLB{API: awspricing.NewFromConfig(cfg, func(o *awspricing.Options) {
		if baseEndpoint != "" {
			o.BaseEndpoint = aws.String(baseEndpoint)
		}
		o.HTTPClient = bufferedClient{next: o.HTTPClient}
	})}
}

// bufferedClient reads each response body whole before handing it to the
// SDK. With aws-sdk-go-v2/service/pricing v1.51.6 (smithy-go v1.28.9) the
// request's context can end while the deserializer still reads a large
// body (a page of 100 price list documents), failing it with "use of
// closed network connection"; a body already in memory cannot be cut off.
type bufferedClient struct{ next awspricing.HTTPClient }

// maxPriceListPage bounds one GetProducts answer (100 documents of a few
// KiB each).
const maxPriceListPage = 32 << 20

func (c bufferedClient) Do(req *http.Request) (*http.Response, error) {
	next := c.next
	if next == nil {
		next = http.DefaultClient
	}
	resp, err := next.Do(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPriceListPage+1))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("reading GetProducts answer: %w", err)
	}
	if len(body) > maxPriceListPage {
		return nil, fmt.Errorf("GetProducts answer larger than %d bytes", maxPriceListPage)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

// Kind implements pricing.Source.
func (*AWSNLB) Kind() string { return "aws-nlb" }

// Name implements pricing.Source.
func (*AWSNLB) Name() string { return "aws-price-list" }

var (
	awsNLBHour = regexp.MustCompile(`^([A-Z0-9]+-)?LoadBalancerUsage$`)
	awsNLCU    = regexp.MustCompile(`^([A-Z0-9]+-)?LCUUsage$`)
	awsIPv4    = regexp.MustCompile(`^([A-Z0-9]+-)?PublicIPv4:InUseAddress$`)
)

// Fetch implements pricing.Source.
func (s *AWSNLB) Fetch(ctx context.Context, region, currency string) (*pricing.Quote, error) {
	q := &pricing.Quote{Region: region, Currency: currency, Hourly: map[string]string{}, SKUs: map[string]string{}}
	lb, err := s.products(ctx, "AWSELB", []types.Filter{
		termMatch("regionCode", region),
		termMatch("productFamily", "Load Balancer-Network"),
	})
	if err != nil {
		return nil, err
	}
	ip, err := s.products(ctx, "AmazonVPC", []types.Filter{
		termMatch("regionCode", region),
		{Type: types.FilterTypeContains, Field: aws.String("usagetype"), Value: aws.String("PublicIPv4:InUseAddress")},
	})
	if err != nil {
		return nil, err
	}
	for _, m := range []struct {
		key  string
		docs []awsProduct
		re   *regexp.Regexp
	}{
		{pricing.QuoteFixed, lb, awsNLBHour},
		{"nlcus", lb, awsNLCU},
		{"publicIPs", ip, awsIPv4},
	} {
		if err := pickAWS(q, m.key, m.docs, m.re, currency); err != nil {
			return nil, err
		}
	}
	return q, nil
}

func termMatch(field, value string) types.Filter {
	return types.Filter{Type: types.FilterTypeTermMatch, Field: aws.String(field), Value: aws.String(value)}
}

// awsProduct is one PriceList document (format aws_v1): the product and
// its terms. https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/reading-service-price-list-file-for-services.html
type awsProduct struct {
	Product struct {
		ProductFamily string            `json:"productFamily"`
		Attributes    map[string]string `json:"attributes"`
		SKU           string            `json:"sku"`
	} `json:"product"`
	Terms struct {
		OnDemand map[string]struct {
			PriceDimensions map[string]struct {
				Unit         string            `json:"unit"`
				BeginRange   string            `json:"beginRange"`
				PricePerUnit map[string]string `json:"pricePerUnit"`
			} `json:"priceDimensions"`
		} `json:"OnDemand"`
	} `json:"terms"`
}

// products pages through GetProducts.
func (s *AWSNLB) products(ctx context.Context, service string, filters []types.Filter) ([]awsProduct, error) {
	var out []awsProduct
	p := awspricing.NewGetProductsPaginator(s.API, &awspricing.GetProductsInput{
		ServiceCode:   aws.String(service),
		Filters:       filters,
		FormatVersion: aws.String("aws_v1"),
		MaxResults:    aws.Int32(100),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("GetProducts %s: %w", service, err)
		}
		for i, doc := range page.PriceList {
			d, err := decodeAWSDoc(doc)
			if err != nil {
				return nil, pricing.LiveErrorf(pricing.ReasonLivePriceInvalid, "aws-price-list: GetProducts %s: PriceList[%d] is not a price list document: %v", service, i, err)
			}
			out = append(out, d)
		}
	}
	return out, nil
}

func decodeAWSDoc(doc string) (awsProduct, error) {
	var d awsProduct
	err := json.Unmarshal([]byte(doc), &d)
	return d, err
}

// pickAWS finds the one on-demand price of the usage type re matches.
// Several products or tiers with different prices are ambiguous, and a
// price in another currency only is a currency mismatch.
func pickAWS(q *pricing.Quote, key string, docs []awsProduct, re *regexp.Regexp, currency string) error {
	prices := map[string]string{} // price -> sku
	var otherCurrencies []string
	for _, d := range docs {
		if !re.MatchString(d.Product.Attributes["usagetype"]) {
			continue
		}
		for _, term := range d.Terms.OnDemand {
			for _, dim := range term.PriceDimensions {
				if dim.BeginRange != "" && dim.BeginRange != "0" {
					continue // a later tier; Portico prices the first
				}
				p, ok := dim.PricePerUnit[currency]
				if !ok {
					for c := range dim.PricePerUnit {
						otherCurrencies = append(otherCurrencies, c)
					}
					continue
				}
				prices[trimZeros(p)] = d.Product.SKU + " " + d.Product.Attributes["usagetype"]
			}
		}
	}
	switch len(prices) {
	case 0:
		if len(otherCurrencies) > 0 {
			sort.Strings(otherCurrencies)
			return pricing.LiveErrorf(pricing.ReasonLivePriceCurrency, "aws-price-list: %s in %s is priced in %s, not %s", key, q.Region, strings.Join(otherCurrencies, ", "), currency)
		}
		return pricing.LiveErrorf(pricing.ReasonLivePriceMissing, "aws-price-list returned no product with usage type %s in %s", re, q.Region)
	case 1:
		for p, sku := range prices {
			q.Hourly[key], q.SKUs[key] = p, sku
		}
		return nil
	}
	return pricing.LiveErrorf(pricing.ReasonLivePriceInvalid, "aws-price-list: %d different prices for usage type %s in %s", len(prices), re, q.Region)
}

// trimZeros turns the API's "0.0225000000" into "0.0225".
func trimZeros(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(s, "0")
		s = strings.TrimSuffix(s, ".")
	}
	return s
}
