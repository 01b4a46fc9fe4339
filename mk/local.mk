# Local mode targets (providers/local, announce, portico-forwarder). Included
# by the main Makefile. The netns tests and the benchmark need root and
# iproute2 (ip); nftables is not needed.

.PHONY: test-local test-monitoring bench-failover fuzz-local

test-local: ## Allocator, conformance, leader choice, heartbeat, netns ARP/NDP and hostile-network forwarder tests (root).
	$(GO) test -count=1 ./providers/local/... ./announce/... ./internal/forwarder/... ./e2e/forwarder/
	$(GO) test -count=1 -run IPPool ./controllers/

test-monitoring: ## Alert rules and dashboard (kustomize component and Helm chart) against the metrics a running operator and forwarder export.
	cd e2e/monitoring && $(GO) test -count=1 ./...

# bench-failover: 20 failovers of a local address among three node namespaces
# running the real portico-forwarder (static mode: fixed address and peers,
# no apiserver) while a client probes every 10 ms, three heartbeat-only
# partitions, then the stress phase: 4 busy loops per CPU for 60 s (forwarders
# and loops in CPU cgroups weighted as their pods' requests, 100m and 2000m)
# while no node fails, and 5 more failovers under that load. The output ends
# with failover: runs=20 p50_ms=<n> p99_ms=<n> max_ms=<n> dual_announce_ms=<n>
# false_moves=<n> stress_runs=5 stress_p99_ms=<n>
bench-failover: ## Measure client-visible failover time of a local address, and moves under CPU stress (root).
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -o bin/portico-forwarder ./cmd/portico-forwarder
	$(GO) run ./e2e/failoverbench --runs 20 --forwarder bin/portico-forwarder

fuzz-local: ## Run the local backend's fuzzers briefly.
	$(GO) test -run='^$$' -fuzz=FuzzParseRange -fuzztime=20s ./providers/local/
	$(GO) test -run='^$$' -fuzz=FuzzParseSolicitation -fuzztime=20s ./announce/
	$(GO) test -run='^$$' -fuzz=FuzzParseHeartbeat -fuzztime=20s ./announce/
	$(GO) test -run='^$$' -fuzz=FuzzOpenHeartbeat -fuzztime=20s ./announce/
