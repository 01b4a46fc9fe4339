// Package bgp is portico-forwarder's BGP mode: which host routes this node
// advertises to which router (Plan, pure), the sessions that carry them
// (Speaker, on GoBGP), and the watcher that feeds both from the cluster
// and writes each session's state into its BGPPeer's status.
package bgp
