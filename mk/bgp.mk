# BGP mode targets (bgp, bfd, e2e/bgp). Included by the main Makefile. The e2e
# test and the benchmark need root, iproute2, nftables and FRR (Debian's frr
# package: zebra, bgpd, bfdd).

.PHONY: test-bgp bench-bgp fuzz-bgp

test-bgp: ## BGP mode: plan, speaker, BFD, CRD validation, and the e2e test with FRR (root).
	$(GO) test -count=1 ./bgp/... ./bfd/... ./e2e/bgp/

# bench-bgp: announce, withdraw and failover times against FRR with
# BGP_ADDRESSES Services (default 1000), with BFD; BGP_BFD=false measures
# without. BGP_ADDRESSES6 IPv6 Services (default 1000, 0 for none) are
# announced over an IPv6 peer. BGP_TRACE=true makes FRR log each prefix, to
# split the router's part of the latency. The output ends with
# bgp: addresses=<n> announce_p99_ms=<n> withdraw_p99_ms=<n> failover_p99_ms=<n> bfd=<on|off> addresses6=<n> announce6_p99_ms=<n>
BGP_ADDRESSES ?= 1000
BGP_ADDRESSES6 ?= 1000
BGP_BFD ?= true
BGP_TRACE ?= false
bench-bgp: ## Measure BGP announce, withdraw and node-failover times with a real router (root, FRR).
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -o bin/portico-forwarder ./cmd/portico-forwarder
	$(GO) run ./e2e/bgpbench --addresses $(BGP_ADDRESSES) --addresses6 $(BGP_ADDRESSES6) --bfd=$(BGP_BFD) --trace=$(BGP_TRACE) --forwarder bin/portico-forwarder

fuzz-bgp: ## Run BGP mode's fuzzers briefly.
	$(GO) test -run='^$$' -fuzz=FuzzParseCommunity -fuzztime=20s ./bgp/
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=20s ./bfd/
