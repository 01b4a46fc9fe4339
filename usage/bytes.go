package usage

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
)

// AnnotationForwarderBytes is the annotation on each forwarder's Lease
// (portico-forwarder-<node>) that carries the node's ByteSnapshot: the
// forwarder refreshes it every minute, the operator's local meter reads it
// through its cache.
const AnnotationForwarderBytes = "lb.portico.dev/forwarder-bytes"

// MaxSnapshotAddresses bounds a snapshot (an annotation is at most 256 KiB
// with the others; an address takes about 30 bytes).
const MaxSnapshotAddresses = 4096

// ByteSnapshot is one node's cumulative byte counters at Time: bytes to
// and from each LoadBalancer address that node forwarded, since Epoch. A
// new Epoch means the counters restarted from zero (the nftables table was
// re-created).
type ByteSnapshot struct {
	Epoch string    `json:"epoch"`
	Time  time.Time `json:"time"`
	// Bytes: address -> bytes in and out since Epoch.
	Bytes map[netip.Addr]uint64 `json:"bytes"`
}

// Encode renders s for the annotation.
func (s *ByteSnapshot) Encode() (string, error) {
	if err := s.validate(); err != nil {
		return "", err
	}
	b, err := json.Marshal(s)
	return string(b), err
}

// ParseByteSnapshot reads an annotation's value.
func ParseByteSnapshot(v string) (*ByteSnapshot, error) {
	var s ByteSnapshot
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return nil, fmt.Errorf("forwarder byte snapshot: %w", err)
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *ByteSnapshot) validate() error {
	switch {
	case s.Epoch == "" || len(s.Epoch) > 128:
		return fmt.Errorf("forwarder byte snapshot: epoch %q, want 1 to 128 characters", s.Epoch)
	case s.Time.IsZero():
		return fmt.Errorf("forwarder byte snapshot: no time")
	case len(s.Bytes) > MaxSnapshotAddresses:
		return fmt.Errorf("forwarder byte snapshot: %d addresses, want at most %d", len(s.Bytes), MaxSnapshotAddresses)
	}
	for a := range s.Bytes {
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			return fmt.Errorf("forwarder byte snapshot: address %q is not a plain IPv4 or IPv6 address", a)
		}
	}
	return nil
}
