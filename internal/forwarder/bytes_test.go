package forwarder

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portico-lb/portico/dataplane"
	"github.com/portico-lb/portico/usage"
)

func TestByteReporter(t *testing.T) {
	vip := netip.MustParseAddr("203.0.113.10")
	now := time.Date(2026, 11, 30, 5, 41, 7, 500, time.UTC)
	b := dataplane.Bytes{Epoch: "e1", In: map[netip.Addr]uint64{vip: 1000}, Out: map[netip.Addr]uint64{vip: 24}}
	var readErr error
	r := &byteReporter{Read: func(context.Context) (dataplane.Bytes, error) { return b, readErr }, Now: func() time.Time { return now }}
	if got := r.Annotations()[usage.AnnotationForwarderBytes]; got != "" {
		t.Errorf("annotation before any reading = %q", got)
	}
	if err := r.read(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err := usage.ParseByteSnapshot(r.Annotations()[usage.AnnotationForwarderBytes])
	if err != nil {
		t.Fatal(err)
	}
	if s.Epoch != "e1" || s.Bytes[vip] != 1024 || !s.Time.Equal(now.Truncate(time.Second)) {
		t.Errorf("snapshot %+v, want epoch e1, %s: 1024 bytes (in and out) at %s", s, vip, now)
	}
	want := `
# HELP portico_forwarder_bytes_total Bytes this node forwarded to (direction=in) and from (direction=out) each LoadBalancer address, counted by nftables since the counters' epoch (a re-created table starts them over).
# TYPE portico_forwarder_bytes_total counter
portico_forwarder_bytes_total{address="203.0.113.10",direction="in"} 1000
portico_forwarder_bytes_total{address="203.0.113.10",direction="out"} 24
`
	if err := testutil.CollectAndCompare(r, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	readErr = errors.New("nft: table not found")
	if err := r.read(context.Background()); err == nil {
		t.Fatal("a failed reading reported no error")
	}
	if got := r.Annotations()[usage.AnnotationForwarderBytes]; got != "" {
		t.Errorf("after a failed reading the Lease would still carry %q", got)
	}
}
