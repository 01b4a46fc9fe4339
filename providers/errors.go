package providers

import (
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is returned by Observe when no load balancer exists for a key.
var ErrNotFound = errors.New("load balancer not found")

// RetryError is a transient failure: throttling, a 5xx, an operation still
// running, an eventual-consistency miss. The controller requeues after After
// (or its own backoff when zero) and keeps the Service's address.
type RetryError struct {
	Err   error
	After time.Duration
}

func (e *RetryError) Error() string {
	if e.After > 0 {
		return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
	}
	return e.Err.Error()
}

func (e *RetryError) Unwrap() error { return e.Err }

// Retry wraps err as a RetryError with a suggested delay.
func Retry(err error, after time.Duration) error { return &RetryError{Err: err, After: after} }

// ConfigError is a problem the user must fix in the Service (a malformed
// annotation, an unsupported combination, an exhausted pool). The controller
// reports it in the Ready condition and an Event with Reason; it retries only
// when the Service or the world changes, or after a long backoff.
type ConfigError struct {
	Reason  string
	Message string
	// Released is set when the backend no longer serves the Service's
	// addresses because of this error (the local backend's address left
	// every IPPool): the Service's status must drop them, since nodes
	// announce what the status lists.
	Released bool
}

func (e *ConfigError) Error() string { return e.Message }

// Configf returns a ConfigError with reason and a formatted message.
func Configf(reason, format string, args ...any) error {
	return &ConfigError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// NotOwnedError says a resource with Portico's deterministic name exists but
// lacks its ownership tags; Portico will neither modify nor delete it.
type NotOwnedError struct {
	Kind string
	ID   string
}

func (e *NotOwnedError) Error() string {
	return fmt.Sprintf("%s %s exists but is not owned by Portico (missing portico.dev ownership tags); refusing to modify it", e.Kind, e.ID)
}

// IsRetryable reports whether err is transient and carries the suggested delay.
func IsRetryable(err error) (time.Duration, bool) {
	var re *RetryError
	if errors.As(err, &re) {
		return re.After, true
	}
	return 0, false
}

// Reasons of ConfigErrors that several backends return.
const (
	// ReasonSourceRangesNotEnforceable: the backend cannot restrict the load
	// balancer to the Service's loadBalancerSourceRanges, so it does not
	// build it (or leaves it as it is) rather than admit more clients than
	// asked.
	ReasonSourceRangesNotEnforceable = "SourceRangesNotEnforceable"
	// ReasonResourceNotAllowed: an annotation names a cloud resource outside
	// what the operator allows Services to use (another resource group,
	// project or cluster's subnet); nothing is attached.
	ReasonResourceNotAllowed = "ResourceNotAllowed"
)
