package meters_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/monitor/armmonitor"

	"github.com/portico-lb/portico/providers/azure/azurefake"
	"github.com/portico-lb/portico/usage"
	"github.com/portico-lb/portico/usage/meters"
)

const azureLB = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/mc_portico/providers/Microsoft.Network/loadBalancers/kubernetes"

type azureToken struct{}

func (azureToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "fake", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func newAzureMeter(t *testing.T) (*azurefake.Metrics, *meters.AzureStandardLB) {
	t.Helper()
	f := azurefake.NewMetrics()
	t.Cleanup(f.Close)
	cfg := cloud.Configuration{Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
		cloud.ResourceManager: {Endpoint: f.URL(), Audience: "https://management.azure.com"}}}
	m, err := meters.NewAzureStandardLB("00000000-0000-0000-0000-000000000001", azureToken{}, &arm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud: cfg, Transport: f.Client(), Retry: policy.RetryOptions{MaxRetries: 1, RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	return f, m
}

func putAzureBytes(f *azurefake.Metrics, ip string, hour time.Time, perMinute float64) {
	for m := 0; m < 60; m++ {
		f.Put(azureLB, "ByteCount", map[string]string{"FrontendIPAddress": ip, "Direction": "In"}, hour.Add(time.Duration(m)*time.Minute), perMinute)
	}
}

func TestAzureStandardLBSplitsByFrontend(t *testing.T) {
	f, m := newAzureMeter(t)
	web, db := azureLB+"#20.1.2.3", azureLB+"#20.1.2.4"
	putAzureBytes(f, "20.1.2.3", start, 25_000_000)               // 1.5 GB
	putAzureBytes(f, "20.1.2.3", start.Add(2*time.Hour), 500_000) // 0.03 GB
	putAzureBytes(f, "20.1.2.4", start.Add(time.Hour), 1e9)       // 60 GB
	putAzureBytes(f, "20.1.2.9", start, 1e9)                      // another Service's frontend
	hours, bad, err := m.Measure(context.Background(), "westeurope", []string{web, db, "not-an-id"}, start, end)
	if err != nil {
		t.Fatalf("Measure: %v", err)
	}
	if len(bad) != 1 {
		t.Errorf("bad = %v, want the malformed id alone", bad)
	}
	got := map[string]string{}
	for id, h := range hours {
		for hour, v := range h["dataProcessed"] {
			got[fmt.Sprintf("%s@%d", id[len(id)-1:], int(hour.Sub(start)/time.Hour))] = v.RatString()
		}
	}
	if want := map[string]string{"3@0": "3/2", "3@2": "3/100", "4@1": "60"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("hours = %v, want %v", got, want)
	}
	if c := f.Calls(); len(c) != 1 || c[0].Filter != "FrontendIPAddress eq '20.1.2.3' or FrontendIPAddress eq '20.1.2.4'" {
		t.Errorf("calls %+v; want one call filtering both frontends", c)
	}
}

func TestAzureStandardLBDenied(t *testing.T) {
	f, m := newAzureMeter(t)
	f.Deny(true)
	_, _, err := m.Measure(context.Background(), "westeurope", []string{azureLB + "#20.1.2.3"}, start, end)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden || re.ErrorCode != "AuthorizationFailed" || usage.ReasonOf(err) != usage.ReasonUnavailable {
		t.Fatalf("err = %v, want 403 AuthorizationFailed as UsageMetricsUnavailable", err)
	}
}

// The fake refuses what Azure Monitor refuses, through the real client.
func TestAzureMetricsFakeRules(t *testing.T) {
	_, m := newAzureMeter(t)
	timespan := start.Format(time.RFC3339) + "/" + end.Format(time.RFC3339)
	for name, o := range map[string]armmonitor.MetricsClientListOptions{
		"unknown metric":    {Metricnames: to.Ptr("BytesProcessed"), Aggregation: to.Ptr("Total"), Interval: to.Ptr("PT1H"), Timespan: &timespan},
		"unsupported grain": {Metricnames: to.Ptr("ByteCount"), Aggregation: to.Ptr("Total"), Interval: to.Ptr("PT2H"), Timespan: &timespan},
		"start after end":   {Metricnames: to.Ptr("ByteCount"), Aggregation: to.Ptr("Total"), Interval: to.Ptr("PT1H"), Timespan: to.Ptr(end.Format(time.RFC3339) + "/" + start.Format(time.RFC3339))},
		"unknown dimension": {Metricnames: to.Ptr("ByteCount"), Aggregation: to.Ptr("Total"), Interval: to.Ptr("PT1H"), Timespan: &timespan, Filter: to.Ptr("BackendIPAddress eq '10.0.0.4'")},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := m.API.List(context.Background(), azureLB, &o)
			var re *azcore.ResponseError
			if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest {
				t.Fatalf("err = %v, want 400", err)
			}
		})
	}
}

func TestParseAzureMeterID(t *testing.T) {
	for in, ok := range map[string]bool{
		azureLB + "#20.1.2.3":      true,
		azureLB + "#2001:db8::1":   true,
		azureLB + "#20.1.2.3' or ": false,
		azureLB:                    false,
		"#20.1.2.3":                false,
	} {
		if _, _, err := meters.ParseAzureMeterID(in); (err == nil) != ok {
			t.Errorf("ParseAzureMeterID(%q): %v, want ok %v", in, err, ok)
		}
	}
}

// FuzzParseAzureMeterID: the frontend goes into a $filter; only an IP
// address may come out.
func FuzzParseAzureMeterID(f *testing.F) {
	f.Add(azureLB + "#20.1.2.3")
	f.Add(azureLB + "#2001:db8::1")
	f.Fuzz(func(t *testing.T, s string) {
		lb, ip, err := meters.ParseAzureMeterID(s)
		if err != nil {
			return
		}
		if !ip.IsValid() || strings.Trim(ip.String(), "0123456789abcdef.:") != "" || strings.ContainsAny(lb, "'# ") || !strings.HasPrefix(s, lb+"#") {
			t.Fatalf("ParseAzureMeterID(%q) = %q, %v", s, lb, ip)
		}
	})
}
