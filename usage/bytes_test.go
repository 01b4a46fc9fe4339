package usage_test

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/portico-lb/portico/usage"
)

func TestByteSnapshotRoundTrip(t *testing.T) {
	s := &usage.ByteSnapshot{Epoch: "e1", Time: time.Date(2026, 11, 30, 5, 0, 0, 0, time.UTC),
		Bytes: map[netip.Addr]uint64{netip.MustParseAddr("203.0.113.10"): 1 << 40, netip.MustParseAddr("2001:db8::1"): 7}}
	v, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := usage.ParseByteSnapshot(v)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Errorf("round trip of %s = %+v, want %+v", v, got, s)
	}
	for _, bad := range []string{
		`{"time":"2026-11-30T05:00:00Z","bytes":{}}`,
		`{"epoch":"e","bytes":{}}`,
		`{"epoch":"e","time":"2026-11-30T05:00:00Z","bytes":{"fe80::1%eth0":1}}`,
		`{"epoch":"e","time":"2026-11-30T05:00:00Z","bytes":{"::ffff:1.2.3.4":1}}`,
		`{"epoch":"e","time":"2026-11-30T05:00:00Z","bytes":{"10.0.0.1":-1}}`,
		`{"epoch":"e","time":"2026-11-30T05:00:00Z","bytes":{"10.0.0.300":1}}`,
	} {
		if _, err := usage.ParseByteSnapshot(bad); err == nil {
			t.Errorf("ParseByteSnapshot(%s) accepted it", bad)
		}
	}
}

// FuzzParseByteSnapshot: the annotation is written by a forwarder, and
// anyone allowed to update Leases in the namespace can change it; a parsed
// snapshot always encodes and parses back to itself.
func FuzzParseByteSnapshot(f *testing.F) {
	f.Add(`{"epoch":"e1","time":"2026-11-30T05:00:00Z","bytes":{"203.0.113.10":12345,"2001:db8::1":0}}`)
	f.Add(`{"epoch":"","time":"0001-01-01T00:00:00Z","bytes":null}`)
	f.Add(`{"epoch":"e","time":"2026-11-30T05:00:00Z","bytes":{"::ffff:1.2.3.4":1}}`)
	f.Fuzz(func(t *testing.T, v string) {
		s, err := usage.ParseByteSnapshot(v)
		if err != nil {
			return
		}
		enc, err := s.Encode()
		if err != nil {
			t.Fatalf("parsed %q but cannot encode it: %v", v, err)
		}
		again, err := usage.ParseByteSnapshot(enc)
		if err != nil || !reflect.DeepEqual(again, s) {
			t.Fatalf("%q -> %q -> %+v, %v; want %+v", v, enc, again, err, s)
		}
	})
}
