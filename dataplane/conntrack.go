package dataplane

import (
	"context"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NewConntrackCleaner returns a ConntrackCleaner that deletes, through
// netlink, the conntrack entries whose reply comes from the address of a
// removed UDP or SCTP endpoint (netlink filters cannot match the reply
// port, so every flow of that protocol from the address goes), so the next datagram of such a flow is load-balanced anew.
// TCP needs none: a dead endpoint resets the connection.
func NewConntrackCleaner() func(ctx context.Context, gone []RemovedEndpoint) error {
	return func(_ context.Context, gone []RemovedEndpoint) error {
		var errs []error
		for _, ep := range gone {
			proto := uint8(unix.IPPROTO_UDP)
			if ep.Protocol == SCTP {
				proto = unix.IPPROTO_SCTP
			}
			f := &netlink.ConntrackFilter{}
			if err := f.AddIP(netlink.ConntrackReplySrcIP, ep.Addr.AsSlice()); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := f.AddProtocol(proto); err != nil {
				errs = append(errs, err)
				continue
			}
			fam := netlink.InetFamily(unix.AF_INET)
			if ep.Addr.Is6() {
				fam = unix.AF_INET6
			}
			if _, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, f); err != nil {
				errs = append(errs, fmt.Errorf("deleting conntrack entries of %s %s:%d: %w", ep.Protocol, ep.Addr, ep.Port, err))
			}
		}
		return errors.Join(errs...)
	}
}
