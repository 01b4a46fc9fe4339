// Package pricefake is test support: in-process price APIs speaking the wire
// protocols of the AWS Price List Query API (JSON 1.1), the Azure Retail
// Prices API (REST, OData $filter) and the Cloud Billing Catalog API (REST),
// so that the real clients in pricing/sources are tested against them.
// Production code never imports it.
//
// Each fake refuses what the real API refuses, as far as Portico's calls
// reach, and says which documentation the rule comes from; each can fail
// (unreachable, not permitted) and serve bad data on purpose.
package pricefake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// AWSPriceList serves GetProducts of the AWS Price List Query API.
// https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_pricing_GetProducts.html
type AWSPriceList struct {
	mu sync.Mutex
	// Products by service code, each a PriceList document (AWSDoc).
	Products map[string][]string
	// Deny answers AccessDeniedException, as for a role without
	// pricing:GetProducts.
	Deny bool
	// Calls counts GetProducts requests.
	Calls int
}

// NewAWSPriceList returns an empty fake.
func NewAWSPriceList() *AWSPriceList { return &AWSPriceList{Products: map[string][]string{}} }

// Add adds a product document under its service code.
func (f *AWSPriceList) Add(service, doc string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Products[service] = append(f.Products[service], doc)
}

// SetDeny switches AccessDeniedException on or off.
func (f *AWSPriceList) SetDeny(deny bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Deny = deny
}

// AWSDoc is a PriceList document (format version aws_v1) with one on-demand
// price dimension, in the shape of the service price list files:
// https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/reading-service-price-list-file-for-services.html
func AWSDoc(service, family, regionCode, usagetype, sku, unit, currency, price string) string {
	doc := map[string]any{
		"product": map[string]any{
			"productFamily": family,
			"attributes": map[string]string{
				"servicecode": service, "regionCode": regionCode, "usagetype": usagetype,
				"locationType": "AWS Region", "operation": "LoadBalancing:Network",
			},
			"sku": sku,
		},
		"serviceCode": service,
		"terms": map[string]any{
			"OnDemand": map[string]any{
				sku + ".JRTCKXETXF": map[string]any{
					"offerTermCode": "JRTCKXETXF", "sku": sku, "effectiveDate": "2026-11-01T00:00:00Z",
					"priceDimensions": map[string]any{
						sku + ".JRTCKXETXF.6YS6EN2CT7": map[string]any{
							"unit": unit, "beginRange": "0", "endRange": "Inf", "rateCode": sku + ".JRTCKXETXF.6YS6EN2CT7",
							"description":  fmt.Sprintf("%s %s per %s", currency, price, unit),
							"pricePerUnit": map[string]string{currency: price},
						},
					},
					"termAttributes": map[string]string{},
				},
			},
		},
		"version":         "20261101000000",
		"publicationDate": "2026-11-01T00:00:00Z",
	}
	b, _ := json.Marshal(doc)
	return string(b)
}

type awsFilter struct {
	Type, Field, Value string
}

type getProductsInput struct {
	ServiceCode   string
	Filters       []awsFilter
	FormatVersion string
	NextToken     string
	MaxResults    *int
}

func (f *AWSPriceList) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// JSON 1.1 protocol: POST / with X-Amz-Target <service>.<operation>.
	// https://smithy.io/2.0/aws/protocols/aws-json-1_1-protocol.html
	if r.Method != http.MethodPost || r.Header.Get("X-Amz-Target") != "AWSPriceListService.GetProducts" {
		awsError(w, 400, "UnknownOperationException", "unknown operation "+r.Header.Get("X-Amz-Target"))
		return
	}
	// Every request is SigV4-signed.
	// https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/CommonErrors.html
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		awsError(w, 400, "MissingAuthenticationTokenException", "Missing Authentication Token")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	if f.Deny {
		awsError(w, 400, "AccessDeniedException", "User is not authorized to perform: pricing:GetProducts")
		return
	}
	var in getProductsInput
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		awsError(w, 400, "SerializationException", err.Error())
		return
	}
	// ServiceCode is required; MaxResults is 1 to 100; FormatVersion is aws_v1.
	// https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_pricing_GetProducts.html
	if in.ServiceCode == "" {
		awsError(w, 400, "InvalidParameterException", "ServiceCode is required")
		return
	}
	size := 100
	if in.MaxResults != nil {
		if *in.MaxResults < 1 || *in.MaxResults > 100 {
			awsError(w, 400, "InvalidParameterException", "MaxResults must be between 1 and 100")
			return
		}
		size = *in.MaxResults
	}
	if in.FormatVersion != "" && in.FormatVersion != "aws_v1" {
		awsError(w, 400, "InvalidParameterException", "FormatVersion must be aws_v1")
		return
	}
	docs, ok := f.Products[in.ServiceCode]
	if !ok {
		awsError(w, 400, "NotFoundException", "service code "+in.ServiceCode+" not found")
		return
	}
	var match []string
	for _, d := range docs {
		ok, err := awsMatches(d, in.Filters)
		if err != nil {
			awsError(w, 400, "InvalidParameterException", err.Error())
			return
		}
		if ok {
			match = append(match, d)
		}
	}
	start := 0
	if in.NextToken != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(in.NextToken, "page-"))
		if err != nil || !strings.HasPrefix(in.NextToken, "page-") || n <= 0 || n > len(match) {
			awsError(w, 400, "InvalidNextTokenException", "The pagination token is invalid")
			return
		}
		start = n
	}
	end := min(start+size, len(match))
	out := map[string]any{"FormatVersion": "aws_v1", "PriceList": match[start:end]}
	if end < len(match) {
		out["NextToken"] = "page-" + strconv.Itoa(end)
	}
	body, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// awsMatches applies the filters to a document's attributes (and
// productFamily). The filter types are those of the Filter data type.
// https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_pricing_Filter.html
func awsMatches(doc string, filters []awsFilter) (bool, error) {
	var d struct {
		Product struct {
			ProductFamily string            `json:"productFamily"`
			Attributes    map[string]string `json:"attributes"`
		} `json:"product"`
	}
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		return true, nil // fault injection: a corrupt document is served to every query of its service
	}
	for _, fl := range filters {
		v, ok := d.Product.Attributes[fl.Field]
		if fl.Field == "productFamily" {
			v, ok = d.Product.ProductFamily, true
		}
		switch fl.Type {
		case "TERM_MATCH", "EQUALS":
			if !ok || v != fl.Value {
				return false, nil
			}
		case "CONTAINS":
			if !ok || !strings.Contains(v, fl.Value) {
				return false, nil
			}
		case "ANY_OF", "NONE_OF":
			in := false
			for _, want := range strings.Split(fl.Value, ",") {
				in = in || (ok && v == want)
			}
			if in != (fl.Type == "ANY_OF") {
				return false, nil
			}
		default:
			return false, fmt.Errorf("filter type %q is not one of TERM_MATCH, EQUALS, CONTAINS, ANY_OF, NONE_OF", fl.Type)
		}
	}
	return true, nil
}

func awsError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "Message": msg})
}
