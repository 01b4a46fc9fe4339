package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"github.com/portico-lb/portico/providers"
)

// Default delays when Azure sends no Retry-After.
const (
	throttleDelay = 10 * time.Second
	transientWait = 5 * time.Second
)

// classify turns an SDK error into the provider contract's error types.
// what says what was being done. An error comes either from the request
// itself (its HTTP status and ARM error code) or from the long-running
// operation it started, which ended Failed or Canceled: then the poll
// answered 200 and only the error code in the operation's status tells what
// happened (https://learn.microsoft.com/azure/azure-resource-manager/management/async-operations).
// Three classes:
//
//   - retryable (*providers.RetryError with Azure's Retry-After):
//     throttling, 5xx, conflicts with another operation, stale ETags,
//     operations that failed inside Azure or were superseded;
//   - quota (*providers.ConfigError, reason QuotaExceeded, naming the
//     quota): a subscription quota or a resource limit is reached, which
//     only a quota increase or fewer resources fixes;
//   - configuration (*providers.ConfigError): requests Azure rejects as
//     invalid, and permissions.
func classify(what string, err error) error {
	if err == nil {
		return nil
	}
	wrapped := fmt.Errorf("%s: %w", what, err)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return wrapped
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		// Transport errors: connection reset, TLS, DNS.
		return providers.Retry(wrapped, transientWait)
	}
	code := re.ErrorCode
	switch {
	case isQuotaCode(code):
		return &providers.ConfigError{Reason: ReasonQuotaExceeded, Message: fmt.Sprintf(
			"Azure quota or limit %s reached while %s: %s (raise the quota of the subscription, or free resources; see https://learn.microsoft.com/azure/azure-resource-manager/management/azure-subscription-service-limits)",
			code, what, errorMessage(re))}
	case retryableCodes[code]:
		return providers.Retry(wrapped, retryAfter(re.RawResponse, transientWait))
	case re.StatusCode == http.StatusTooManyRequests:
		return providers.Retry(wrapped, retryAfter(re.RawResponse, throttleDelay))
	case re.StatusCode >= 500, re.StatusCode == http.StatusConflict,
		re.StatusCode == http.StatusPreconditionFailed, re.StatusCode == http.StatusRequestTimeout:
		return providers.Retry(wrapped, retryAfter(re.RawResponse, transientWait))
	case re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden:
		return providers.Configf("AzureForbidden", "%v (does the operator's identity hold the role in docs/providers/azure.md?)", wrapped)
	case re.StatusCode == http.StatusNotFound:
		return providers.Configf("AzureNotFound", "%v", wrapped)
	}
	switch code {
	case "PrivateIPAddressInUse", "PublicIPReferencedByMultipleIPConfigs":
		return providers.Configf("AddressInUse", "%v", wrapped)
	case "PrivateIPAddressNotInSubnet":
		return providers.Configf("AddressNotInSubnet", "%v", wrapped)
	}
	return providers.Configf("AzureRejected", "%v", wrapped)
}

// retryableCodes are ARM error codes that a later attempt can get past,
// whatever the HTTP status (a failed operation polls as 200).
var retryableCodes = map[string]bool{
	"AnotherOperationInProgress":                 true,
	"CanceledAndSupersededDueToAnotherOperation": true,
	"Canceled":                         true,
	"Conflict":                         true,
	"InternalServerError":              true,
	"ServiceUnavailable":               true,
	"GatewayTimeout":                   true,
	"RetryableError":                   true,
	"OperationPreempted":               true,
	"ReferencedResourceNotProvisioned": true,
	"SecurityRuleConflict":             true, // two writers picked one priority
	"PreconditionFailed":               true,
	"SubscriptionRequestsThrottled":    true,
	"TooManyRequests":                  true,
}

// isQuotaCode reports ARM error codes of exhausted quotas and limits:
// QuotaExceeded and the *LimitReached / *LimitExceeded family
// (PublicIPCountLimitReached, ...)
// (https://learn.microsoft.com/azure/networking/check-usage-against-limits).
func isQuotaCode(code string) bool {
	return code == "QuotaExceeded" || strings.HasSuffix(code, "QuotaExceeded") ||
		strings.HasSuffix(code, "LimitReached") || strings.HasSuffix(code, "LimitExceeded")
}

// errorMessage is the ARM error's message, read from the response body.
func errorMessage(re *azcore.ResponseError) string {
	if re.RawResponse == nil || re.RawResponse.Body == nil {
		return re.ErrorCode
	}
	// Payload returns the body the SDK already read and kept.
	b, err := runtime.Payload(re.RawResponse)
	if err != nil || len(b) == 0 {
		return re.ErrorCode
	}
	var body struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &body) != nil || body.Error.Message == "" {
		return re.ErrorCode
	}
	return body.Error.Message
}

// retryAfter reads Retry-After (seconds or HTTP date) or retry-after-ms.
func retryAfter(resp *http.Response, fallback time.Duration) time.Duration {
	if resp == nil {
		return fallback
	}
	for _, h := range []string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"} {
		if ms, err := strconv.Atoi(resp.Header.Get(h)); err == nil && ms > 0 {
			return time.Duration(ms) * time.Millisecond
		}
	}
	v := resp.Header.Get("Retry-After")
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return fallback
}

// isNotFound reports a 404 from ARM.
func isNotFound(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}

// isPreconditionFailed reports a 412 (stale ETag) from ARM.
func isPreconditionFailed(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusPreconditionFailed
}

// isPermanent reports an error a retry of the same request cannot get
// past: a request Azure rejects as invalid, or an operation that failed for
// a reason of its content or a quota.
func isPermanent(err error) bool {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	var ce *providers.ConfigError
	return errors.As(classify("", err), &ce)
}
