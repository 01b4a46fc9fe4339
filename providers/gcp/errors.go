package gcp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/googleapi"

	"github.com/portico-lb/portico/providers"
)

// Google API error reasons the provider acts on.
const (
	reasonRateLimit     = "rateLimitExceeded"
	reasonUserRateLimit = "userRateLimitExceeded"
	reasonQuota         = "quotaExceeded"
	reasonInUse         = "resourceInUseByAnotherResource"
	reasonNotReady      = "resourceNotReady"
	reasonMemberExists  = "memberAlreadyExists"
)

// Operation error codes (Operation.error.errors[].code) the provider acts on
// (https://cloud.google.com/compute/docs/reference/rest/v1/regionOperations#Operation).
const (
	opQuotaExceeded = "QUOTA_EXCEEDED"
	opInUse         = "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE"
	opNotReady      = "RESOURCE_NOT_READY"
	opInternal      = "INTERNAL_ERROR"
	opOperationLost = "OPERATION_CANCELED"
)

// ReasonQuotaExceeded is the condition reason when a Compute Engine quota
// stops a change; the message names the quota.
const ReasonQuotaExceeded = "QuotaExceeded"

// ReasonInstanceGroupConflict is the condition reason when the Service's
// nodes are in another load-balanced instance group Portico cannot use.
const ReasonInstanceGroupConflict = "InstanceGroupConflict"

// OperationError is a mutation Compute Engine accepted and then failed: the
// Operation ended DONE with error.errors[]. Code is the first error's code
// (QUOTA_EXCEEDED, RESOURCE_IN_USE_BY_ANOTHER_RESOURCE, ...), Quota the quota
// metric named in its quotaInfo, if any.
type OperationError struct {
	HTTPCode int
	Code     string
	Message  string
	Quota    string
}

func (e *OperationError) Error() string {
	return fmt.Sprintf("operation failed: %s: %s", e.Code, e.Message)
}

// operationError reads a finished Operation's error, nil when it succeeded.
func operationError(op *computepb.Operation) *OperationError {
	errs := op.GetError().GetErrors()
	if op.GetStatus() != computepb.Operation_DONE || (len(errs) == 0 && op.GetHttpErrorStatusCode() < 300) {
		return nil
	}
	oe := &OperationError{HTTPCode: int(op.GetHttpErrorStatusCode()), Message: op.GetHttpErrorMessage()}
	if len(errs) > 0 {
		oe.Code, oe.Message = errs[0].GetCode(), errs[0].GetMessage()
		for _, d := range errs[0].GetErrorDetails() {
			if q := d.GetQuotaInfo(); q != nil {
				oe.Quota = q.GetMetricName()
				if l := q.GetLimitName(); l != "" {
					oe.Quota += " (limit " + l + ")"
				}
			}
		}
	}
	return oe
}

// kind is how the provider treats an API error.
type kind int

const (
	kindOther     kind = iota
	kindNotFound       // 404: the resource is gone
	kindExists         // 409: the resource exists (a create that raced or was retried)
	kindThrottled      // 429, 403 rate limits, 5xx: back off and retry the same call
	kindQuota          // 403 quotaExceeded: the project is out of a resource quota
	kindStale          // 412: a fingerprint is stale; re-read and try again
	kindInUse          // 400 resourceInUseByAnotherResource or resourceNotReady
	kindDenied         // 401/403 otherwise: IAM
	kindInvalid        // other 400s: the request is wrong for this project
	kindOpRetry        // an operation failed in a way a new attempt may not (internal, not ready, in use)
)

// classify reads the HTTP status and reason of a Compute API error, which the
// REST clients return as *googleapi.Error (or, from operations, as an
// *apierror.APIError wrapping one).
func classify(err error) kind {
	if err == nil {
		return kindOther
	}
	code, reasons := 0, map[string]bool{}
	var ge *googleapi.Error
	var ae *apierror.APIError
	var oe *OperationError
	switch {
	case errors.As(err, &oe):
		switch {
		case oe.Code == opQuotaExceeded:
			return kindQuota
		case oe.Code == "RESOURCE_NOT_FOUND" || oe.HTTPCode == http.StatusNotFound:
			return kindNotFound
		case oe.Code == "RESOURCE_ALREADY_EXISTS" || oe.HTTPCode == http.StatusConflict:
			return kindExists
		case oe.Code == "CONDITION_NOT_MET" || oe.HTTPCode == http.StatusPreconditionFailed:
			return kindStale
		case oe.Code == opInternal, oe.Code == opNotReady, oe.Code == opInUse, oe.Code == opOperationLost, oe.HTTPCode >= 500:
			return kindOpRetry
		case oe.HTTPCode == http.StatusForbidden || oe.HTTPCode == http.StatusUnauthorized:
			return kindDenied
		}
		return kindInvalid
	case errors.As(err, &ge):
		code = ge.Code
		for _, e := range ge.Errors {
			reasons[e.Reason] = true
		}
	case errors.As(err, &ae):
		code = ae.HTTPCode()
		if r := ae.Reason(); r != "" {
			reasons[r] = true
		}
	default:
		return kindOther
	}
	switch {
	case code == http.StatusNotFound:
		return kindNotFound
	case code == http.StatusConflict:
		return kindExists
	case code == http.StatusPreconditionFailed:
		return kindStale
	case code == http.StatusTooManyRequests, code >= 500,
		code == http.StatusForbidden && (reasons[reasonRateLimit] || reasons[reasonUserRateLimit]):
		return kindThrottled
	case code == http.StatusForbidden && reasons[reasonQuota]:
		return kindQuota
	case code == http.StatusBadRequest && (reasons[reasonInUse] || reasons[reasonNotReady] || reasons[reasonMemberExists]):
		return kindInUse
	case code == http.StatusUnauthorized, code == http.StatusForbidden:
		return kindDenied
	case code == http.StatusBadRequest:
		return kindInvalid
	}
	return kindOther
}

// Backoff is the provider's in-call retry policy for throttling and 5xx.
type Backoff struct {
	// Attempts is how often one API call is tried before Ensure gives up
	// with a *providers.RetryError.
	Attempts int
	// Initial and Max bound the jittered exponential delay between attempts.
	Initial, Max time.Duration
}

func (b Backoff) delay(attempt int) time.Duration {
	d := b.Initial << min(attempt, 20)
	if d > b.Max || d <= 0 {
		d = b.Max
	}
	// Full jitter keeps many Services from retrying in lockstep.
	return time.Duration(rand.Int64N(int64(d)) + 1)
}

// call runs fn, retrying throttling and 5xx with backoff, and maps what is
// left onto the provider contract (see wrap).
func (p *Provider) call(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	var err error
	for attempt := range p.opts.Backoff.Attempts {
		if err = p.limit(ctx); err != nil {
			return err
		}
		if err = fn(ctx); err == nil || classify(err) != kindThrottled {
			break
		}
		if attempt == p.opts.Backoff.Attempts-1 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(p.opts.Backoff.delay(attempt)):
		}
	}
	return p.wrap(what, err)
}

func (p *Provider) limit(ctx context.Context) error {
	if p.limiter == nil {
		return nil
	}
	return p.limiter.Wait(ctx)
}

// wrap maps an API error onto the provider contract: transient ones become a
// *providers.RetryError with a suggested delay, quota and permission problems
// a RetryError or a *providers.ConfigError, anything else a wrapped error. Not-found and already-exists keep their googleapi.Error so
// callers can test them with classify.
func (p *Provider) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	wrapped := fmt.Errorf("%s: %w", what, err)
	switch classify(err) {
	case kindThrottled:
		return providers.Retry(wrapped, p.opts.RetryAfter)
	case kindQuota:
		// A resource quota frees up only when something is deleted or the
		// quota raised: the user must act, and the condition says which.
		return &providers.ConfigError{Reason: ReasonQuotaExceeded, Message: fmt.Sprintf(
			"%s: a Compute Engine quota is exhausted%s; raise it (https://cloud.google.com/docs/quotas/view-manage) or free resources: %v",
			what, quotaName(err), err)}
	case kindStale, kindInUse, kindOpRetry:
		return providers.Retry(wrapped, p.opts.RetryAfter/5)
	case kindDenied:
		return providers.Configf("AccessDenied", "%s: the operator's Google service account lacks a permission (see docs/providers/gcp.md for the role): %v", what, err)
	case kindInvalid:
		return providers.Configf("InvalidConfiguration", "%s: %v", what, err)
	}
	return wrapped
}

// quotaName names the exhausted quota an error carries, as " (<name>)".
func quotaName(err error) string {
	var oe *OperationError
	if errors.As(err, &oe) && oe.Quota != "" {
		return " (" + oe.Quota + ")"
	}
	return ""
}
