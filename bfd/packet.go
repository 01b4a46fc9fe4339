// Package bfd is Bidirectional Forwarding Detection (RFC 5880) in
// asynchronous mode over single-hop UDP (RFC 5881), as much as a forwarder
// needs to let its routers detect the node's death in well under a second:
// the control packet codec (Parse, fuzzed), the session state machine
// (Session, driven by a clock the caller passes in) and a UDP transport
// (Conn). Authentication, demand mode and the echo function are not
// implemented; packets that ask for them are refused.
package bfd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// State is a session state (RFC 5880 4.1).
type State uint8

// The four states.
const (
	AdminDown State = 0
	Down      State = 1
	Init      State = 2
	Up        State = 3
)

func (s State) String() string {
	switch s {
	case AdminDown:
		return "AdminDown"
	case Down:
		return "Down"
	case Init:
		return "Init"
	case Up:
		return "Up"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Diag is a diagnostic code (RFC 5880 4.1).
type Diag uint8

// Diagnostics this implementation sets.
const (
	DiagNone              Diag = 0
	DiagDetectionExpired  Diag = 1
	DiagNeighborSignalled Diag = 3
	DiagAdminDown         Diag = 7
)

// Version is the protocol version (RFC 5880 4.1).
const Version = 1

// HeaderLen is the length of a control packet without authentication.
const HeaderLen = 24

// Packet is a BFD control packet (RFC 5880 4.1). Intervals are in
// microseconds on the wire.
type Packet struct {
	Diag       Diag
	State      State
	Poll       bool
	Final      bool
	CPI        bool // control plane independent
	Auth       bool
	Demand     bool
	Multipoint bool
	DetectMult uint8
	MyDisc     uint32
	YourDisc   uint32
	// DesiredMinTx, RequiredMinRx and RequiredMinEchoRx.
	DesiredMinTx, RequiredMinRx, RequiredMinEchoRx time.Duration
}

// Errors of Parse.
var (
	ErrShort         = errors.New("bfd: packet shorter than 24 bytes")
	ErrVersion       = errors.New("bfd: version is not 1")
	ErrLength        = errors.New("bfd: length field does not match the packet")
	ErrDetectMult    = errors.New("bfd: detect multiplier is zero")
	ErrMultipoint    = errors.New("bfd: multipoint bit set")
	ErrMyDisc        = errors.New("bfd: my discriminator is zero")
	ErrAuth          = errors.New("bfd: authentication is not supported")
	ErrDemand        = errors.New("bfd: demand mode is not supported")
	ErrPollAndFinal  = errors.New("bfd: poll and final both set")
	ErrYourDiscState = errors.New("bfd: your discriminator is zero in state Init or Up")
)

// Parse decodes a control packet and applies the reception checks of RFC
// 5880 6.8.6 that need no session: version, length, detect multiplier,
// multipoint, my discriminator, and your discriminator zero only in Down or
// AdminDown. Packets with authentication or demand mode are refused (this
// implementation has neither). Bytes beyond the length field are ignored, as
// the RFC allows for the encapsulation.
func Parse(b []byte) (Packet, error) {
	var p Packet
	if len(b) < HeaderLen {
		return p, ErrShort
	}
	if b[0]>>5 != Version {
		return p, ErrVersion
	}
	p.Diag = Diag(b[0] & 0x1f)
	p.State = State(b[1] >> 6)
	p.Poll = b[1]&0x20 != 0
	p.Final = b[1]&0x10 != 0
	p.CPI = b[1]&0x08 != 0
	p.Auth = b[1]&0x04 != 0
	p.Demand = b[1]&0x02 != 0
	p.Multipoint = b[1]&0x01 != 0
	p.DetectMult = b[2]
	length := int(b[3])
	switch {
	case p.Auth && length < HeaderLen+2, !p.Auth && length < HeaderLen, length > len(b):
		return p, ErrLength
	case p.Auth:
		return p, ErrAuth
	case p.DetectMult == 0:
		return p, ErrDetectMult
	case p.Multipoint:
		return p, ErrMultipoint
	}
	p.MyDisc = binary.BigEndian.Uint32(b[4:])
	p.YourDisc = binary.BigEndian.Uint32(b[8:])
	p.DesiredMinTx = time.Duration(binary.BigEndian.Uint32(b[12:])) * time.Microsecond
	p.RequiredMinRx = time.Duration(binary.BigEndian.Uint32(b[16:])) * time.Microsecond
	p.RequiredMinEchoRx = time.Duration(binary.BigEndian.Uint32(b[20:])) * time.Microsecond
	switch {
	case p.MyDisc == 0:
		return p, ErrMyDisc
	case p.YourDisc == 0 && (p.State == Init || p.State == Up):
		return p, ErrYourDiscState
	case p.Poll && p.Final:
		return p, ErrPollAndFinal
	case p.Demand:
		return p, ErrDemand
	}
	return p, nil
}

// Marshal encodes the packet (24 bytes, no authentication). Intervals are
// rounded down to microseconds and capped at the field's maximum.
func (p Packet) Marshal() []byte {
	b := make([]byte, HeaderLen)
	b[0] = Version<<5 | byte(p.Diag&0x1f)
	b[1] = byte(p.State&3) << 6
	for i, f := range []bool{p.Poll, p.Final, p.CPI, p.Auth, p.Demand, p.Multipoint} {
		if f {
			b[1] |= 0x20 >> i
		}
	}
	b[2] = p.DetectMult
	b[3] = HeaderLen
	binary.BigEndian.PutUint32(b[4:], p.MyDisc)
	binary.BigEndian.PutUint32(b[8:], p.YourDisc)
	binary.BigEndian.PutUint32(b[12:], micros(p.DesiredMinTx))
	binary.BigEndian.PutUint32(b[16:], micros(p.RequiredMinRx))
	binary.BigEndian.PutUint32(b[20:], micros(p.RequiredMinEchoRx))
	return b
}

func micros(d time.Duration) uint32 {
	us := d / time.Microsecond
	if us < 0 {
		return 0
	}
	if us > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(us)
}
