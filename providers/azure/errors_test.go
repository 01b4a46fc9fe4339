package azure

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"github.com/portico-lb/portico/providers"
)

// armResponseError builds the error the SDK returns for an ARM answer: a
// failed request (status >= 400) or a failed operation (a 200 poll whose
// status is Failed).
func armResponseError(status int, code, message string, header http.Header) error {
	body := `{"error":{"code":"` + code + `","message":"` + message + `"}}`
	if status == http.StatusOK {
		body = `{"status":"Failed","error":{"code":"` + code + `","message":"` + message + `"}}`
	}
	req, _ := http.NewRequest(http.MethodGet, "https://management.azure.com/x", nil)
	if header == nil {
		header = http.Header{}
	}
	resp := &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(strings.NewReader(body)), Request: req}
	return runtime.NewResponseError(resp)
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		retry     time.Duration // > 0: want a RetryError with this delay
		reason    string        // else: want a ConfigError with this reason
		inMessage string
	}{
		{"throttled", armResponseError(429, "SubscriptionRequestsThrottled", "slow down", http.Header{"Retry-After": {"17"}}), 17 * time.Second, "", ""},
		{"server error", armResponseError(500, "InternalServerError", "oops", nil), transientWait, "", ""},
		{"conflict", armResponseError(409, "AnotherOperationInProgress", "busy", nil), transientWait, "", ""},
		{"stale etag", armResponseError(412, "PreconditionFailed", "etag", nil), transientWait, "", ""},
		{"operation failed inside Azure", armResponseError(200, "InternalServerError", "oops", nil), transientWait, "", ""},
		{"operation superseded", armResponseError(200, "CanceledAndSupersededDueToAnotherOperation", "later PUT", nil), transientWait, "", ""},
		{"operation quota", armResponseError(200, "PublicIPCountLimitReached", "Cannot create more than 1000 public IP addresses", nil), 0, ReasonQuotaExceeded, "Cannot create more than 1000 public IP addresses"},
		{"request quota", armResponseError(400, "QuotaExceeded", "quota", nil), 0, ReasonQuotaExceeded, "QuotaExceeded"},
		{"limit", armResponseError(400, "LoadBalancerRuleCountLimitReached", "too many rules", nil), 0, ReasonQuotaExceeded, "LoadBalancerRuleCountLimitReached"},
		{"operation failed for its content", armResponseError(200, "InvalidResourceReference", "missing", nil), 0, "AzureRejected", "InvalidResourceReference"},
		{"invalid request", armResponseError(400, "InvalidResourceName", "bad name", nil), 0, "AzureRejected", ""},
		{"address in use", armResponseError(400, "PrivateIPAddressInUse", "taken", nil), 0, "AddressInUse", ""},
		{"forbidden", armResponseError(403, "AuthorizationFailed", "no", nil), 0, "AzureForbidden", ""},
		{"transport", errors.New("connection reset"), transientWait, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classify("doing it", tc.err)
			if tc.retry > 0 {
				after, ok := providers.IsRetryable(got)
				if !ok || after != tc.retry {
					t.Fatalf("got %v, want a retry after %s", got, tc.retry)
				}
				return
			}
			var ce *providers.ConfigError
			if !errors.As(got, &ce) || ce.Reason != tc.reason || !strings.Contains(ce.Message, tc.inMessage) {
				t.Fatalf("got %#v, want ConfigError %s containing %q", got, tc.reason, tc.inMessage)
			}
		})
	}
}
