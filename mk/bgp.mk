# BGP mode targets (bgp, bfd, e2e/bgp). Included by the main Makefile. The e2e
# test and the benchmark need root, iproute2, nftables and FRR (Debian's frr
# package: zebra, bgpd, bfdd).

.PHONY: test-bgp bench-bgp fuzz-bgp

test-bgp: ## BGP mode: plan, speaker, BFD, CRD validation, and the e2e test with FRR (root).
	$(GO) test -count=1 ./bgp/... ./bfd/... ./e2e/bgp/

# bench-bgp: announce, withdraw and failover times against FRR with
# BGP_ADDRESSES Services (default 1000), with BFD; BGP_BFD=false measures
# without. The output ends with
# bgp: addresses=<n> announce_p99_ms=<n> withdraw_p99_ms=<n> failover_p99_ms=<n> bfd=<on|off>
BGP_ADDRESSES ?= 1000
BGP_BFD ?= true
bench-bgp: ## Measure BGP announce, withdraw and node-failover times with a real router (root, FRR).
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -o bin/portico-forwarder ./cmd/portico-forwarder
	$(GO) run ./e2e/bgpbench --addresses $(BGP_ADDRESSES) --bfd=$(BGP_BFD) --forwarder bin/portico-forwarder

fuzz-bgp: ## Run BGP mode's fuzzers briefly.
	$(GO) test -run='^$$' -fuzz=FuzzParseCommunity -fuzztime=20s ./bgp/
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=20s ./bfd/
