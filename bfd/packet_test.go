package bfd

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestPacketRoundTrip(t *testing.T) {
	p := Packet{Diag: DiagDetectionExpired, State: Up, Poll: true, CPI: true, DetectMult: 3, MyDisc: 0xdeadbeef, YourDisc: 7,
		DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: 300 * time.Millisecond}
	b := p.Marshal()
	// Version 1, diag 1; state Up (3<<6) | P (0x20) | C (0x08); mult 3; len 24.
	if want := []byte{0x21, 0xe8, 3, 24, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 7, 0, 0x01, 0x86, 0xa0, 0, 0x04, 0x93, 0xe0, 0, 0, 0, 0}; !bytes.Equal(b, want) {
		t.Fatalf("marshal\n got % x\nwant % x", b, want)
	}
	got, err := Parse(b)
	if err != nil || got != p {
		t.Fatalf("parse: %+v, %v; want %+v", got, err, p)
	}
}

func TestParseRefuses(t *testing.T) {
	good := Packet{State: Down, DetectMult: 3, MyDisc: 1, DesiredMinTx: time.Second, RequiredMinRx: time.Second}.Marshal()
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:23], ErrShort},
		{"version 0", edit(func(b []byte) []byte { b[0] &= 0x1f; return b }), ErrVersion},
		{"length beyond the datagram", edit(func(b []byte) []byte { b[3] = 30; return b }), ErrLength},
		{"length below the header", edit(func(b []byte) []byte { b[3] = 20; return b }), ErrLength},
		{"detect multiplier zero", edit(func(b []byte) []byte { b[2] = 0; return b }), ErrDetectMult},
		{"multipoint", edit(func(b []byte) []byte { b[1] |= 0x01; return b }), ErrMultipoint},
		{"my discriminator zero", edit(func(b []byte) []byte { b[4], b[5], b[6], b[7] = 0, 0, 0, 0; return b }), ErrMyDisc},
		{"your discriminator zero in Up", edit(func(b []byte) []byte { b[1] = byte(Up) << 6; return b }), ErrYourDiscState},
		{"poll and final", edit(func(b []byte) []byte { b[1] |= 0x30; return b }), ErrPollAndFinal},
		{"authentication", edit(func(b []byte) []byte { b[1] |= 0x04; b[3] = 26; return append(b, 1, 2) }), ErrAuth},
		{"demand", edit(func(b []byte) []byte { b[1] |= 0x02; return b }), ErrDemand},
	}
	for _, tc := range cases {
		if _, err := Parse(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := Parse(append(good, 0xff, 0xff)); err != nil {
		t.Errorf("trailing bytes beyond the length field: %v", err)
	}
}

// FuzzParse: Parse never panics, and a packet it accepts encodes back to the
// same 24 bytes, length aside (nothing is lost or invented in decoding).
func FuzzParse(f *testing.F) {
	f.Add(Packet{State: Down, DetectMult: 3, MyDisc: 1, DesiredMinTx: time.Second, RequiredMinRx: time.Second}.Marshal())
	f.Add(Packet{State: Up, Final: true, DetectMult: 3, MyDisc: 9, YourDisc: 4, DesiredMinTx: 100 * time.Millisecond}.Marshal())
	f.Add([]byte{0x20, 0x44, 3, 26, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		if int(b[3]) < HeaderLen || int(b[3]) > len(b) {
			t.Fatalf("accepted length %d of a %d-byte datagram", b[3], len(b))
		}
		want := append([]byte(nil), b[:HeaderLen]...)
		want[3] = HeaderLen // a longer length without authentication is legal; Marshal writes 24
		if got := p.Marshal(); !bytes.Equal(got, want) {
			t.Fatalf("round trip\n got % x\nwant % x", got, want)
		}
	})
}
