package aws

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/portico-lb/portico/providers"
)

// AWS error codes the provider acts on.
const (
	codeLoadBalancerNotFound = "LoadBalancerNotFound"
	codeTargetGroupNotFound  = "TargetGroupNotFound"
	codeListenerNotFound     = "ListenerNotFound"
	codeGroupNotFound        = "InvalidGroup.NotFound"
	codeGroupDuplicate       = "InvalidGroup.Duplicate"
)

// waitCodes are AWS saying "not yet": a dependency is still being released,
// or a describe has not caught up with a create.
var waitCodes = map[string]bool{
	"ResourceInUse": true, "DependencyViolation": true, "DuplicateLoadBalancerName": true,
	"DuplicateTargetGroupName": true, "DuplicateListener": true, codeGroupDuplicate: true,
	"InvalidTarget":       true, // an instance that just terminated, until its Node goes away
	"OperationInProgress": true, "IncorrectState": true,
	// A resource read a moment ago and gone now, or not yet visible.
	codeLoadBalancerNotFound: true, codeTargetGroupNotFound: true, codeListenerNotFound: true, codeGroupNotFound: true,
	// A rule list read before another writer changed it.
	"InvalidPermission.Duplicate": true, "InvalidPermission.NotFound": true,
}

// serverCodes are transient server-side failures.
var serverCodes = map[string]bool{
	"InternalFailure": true, "InternalError": true, "ServiceUnavailable": true, "Unavailable": true,
	"RequestTimeout": true, "RequestTimeoutException": true,
}

// configReasons map errors the user (or the operator's IAM setup) must fix to
// a ConfigError reason.
var configReasons = map[string]string{
	"CertificateNotFound": "CertificateNotFound", "SSLPolicyNotFound": "InvalidSSLPolicy",
	"SubnetNotFound": "InvalidSubnet", "InvalidSubnet": "InvalidSubnet", "InvalidSubnetID.NotFound": "InvalidSubnet",
	"AllocationIdNotFound": "InvalidEIPAllocation", "InvalidAllocationID.NotFound": "InvalidEIPAllocation",
	"InvalidSecurityGroup": "InvalidSecurityGroup", "InvalidConfigurationRequest": "InvalidConfiguration",
	"ValidationError": "InvalidConfiguration", "InvalidParameterValue": "InvalidConfiguration",
	"IncompatibleProtocols": "InvalidConfiguration", "UnsupportedProtocol": "InvalidConfiguration",
	"TooManyLoadBalancers": "QuotaExceeded", "TooManyTargetGroups": "QuotaExceeded", "TooManyListeners": "QuotaExceeded",
	"TooManyTargets": "QuotaExceeded", "TooManyTags": "QuotaExceeded", "TooManyRegistrationsForTargetId": "QuotaExceeded",
	"RulesPerSecurityGroupLimitExceeded": "QuotaExceeded", "SecurityGroupLimitExceeded": "QuotaExceeded",
	"AccessDenied": "AccessDenied", "AccessDeniedException": "AccessDenied", "UnauthorizedOperation": "AccessDenied",
	"OperationNotPermitted": "OperationNotPermitted",
}

// apiCode returns the AWS error code of err, or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// classify wraps an SDK error from doing what and maps it onto the provider
// contract: throttling, 5xx, timeouts and "not yet" answers become a
// *providers.RetryError, problems the user must fix a *providers.ConfigError,
// anything else a plain wrapped error.
func (p *Provider) classify(what string, err error) error {
	wrapped := fmt.Errorf("%s: %w", what, err)
	code := apiCode(err)
	_, throttled := retry.DefaultThrottleErrorCodes[code]
	switch {
	case throttled:
		return providers.Retry(wrapped, p.opts.RetryAfter)
	case serverCodes[code]:
		return providers.Retry(wrapped, p.opts.RetryAfter)
	case waitCodes[code]:
		return providers.Retry(wrapped, p.opts.RetryAfter/5)
	case configReasons[code] != "":
		return &providers.ConfigError{Reason: configReasons[code], Message: wrapped.Error()}
	case code != "":
		return wrapped
	case errors.Is(err, context.Canceled):
		return wrapped
	}
	var quota *ratelimit.QuotaExceededError
	var send *smithyhttp.RequestSendError
	var resp *smithyhttp.ResponseError
	var timeout *retry.MaxAttemptsError
	switch {
	case errors.As(err, &quota), errors.As(err, &send), errors.Is(err, context.DeadlineExceeded):
		return providers.Retry(wrapped, p.opts.RetryAfter)
	case errors.As(err, &resp) && resp.HTTPStatusCode() >= 500:
		return providers.Retry(wrapped, p.opts.RetryAfter)
	case errors.As(err, &timeout):
		return providers.Retry(wrapped, p.opts.RetryAfter)
	}
	return wrapped
}

// groupDeleted turns the answer to DeleteTargetGroup for arn into the
// provider contract. AWS keeps a target group "in use" for a while after
// the listener or load balancer that used it is gone; each further
// ResourceInUse for the same group doubles the suggested delay (from a
// fifth of RetryAfter up to 12 x RetryAfter) instead of asking again every
// second.
func (p *Provider) groupDeleted(arn, what string, err error) error {
	return p.deletedOrBackOff(arn, what, err, codeTargetGroupNotFound, "ResourceInUse")
}

// groupDeleted's rule for DeleteSecurityGroup: a security group keeps a
// dependency (DependencyViolation) while its load balancer's network
// interfaces are released.
func (p *Provider) securityGroupDeleted(id, what string, err error) error {
	return p.deletedOrBackOff(id, what, err, codeGroupNotFound, "DependencyViolation")
}

func (p *Provider) deletedOrBackOff(id, what string, err error, gone, busy string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil || apiCode(err) == gone {
		delete(p.inUse, id)
		return nil
	}
	if apiCode(err) != busy {
		return p.classify(what, err)
	}
	arn := id
	n := p.inUse[arn]
	p.inUse[arn] = n + 1
	limit := 12 * p.opts.RetryAfter
	delay := p.opts.RetryAfter / 5
	for range n {
		if delay *= 2; delay >= limit {
			delay = limit
			break
		}
	}
	return providers.Retry(fmt.Errorf("%s: %w", what, err), delay)
}
