package azure

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/portico-lb/portico/providers"
)

// Default delays when Azure sends no Retry-After.
const (
	throttleDelay = 10 * time.Second
	transientWait = 5 * time.Second
)

// classify turns an SDK error into the provider contract's error types:
// throttling (429) and transient failures become *providers.RetryError with
// Azure's Retry-After, requests Azure rejects as invalid become
// *providers.ConfigError. what says what was being done.
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
	switch {
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
	switch re.ErrorCode {
	case "PrivateIPAddressInUse", "PublicIPReferencedByMultipleIPConfigs":
		return providers.Configf("AddressInUse", "%v", wrapped)
	case "PrivateIPAddressNotInSubnet":
		return providers.Configf("AddressNotInSubnet", "%v", wrapped)
	case "SecurityRuleConflict", "RetryableError", "AnotherOperationInProgress":
		return providers.Retry(wrapped, retryAfter(re.RawResponse, transientWait))
	}
	return providers.Configf("AzureRejected", "%v", wrapped)
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

// isBadRequest reports a 400 from ARM, a request Azure will keep rejecting.
func isBadRequest(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusBadRequest
}
