# GCP provider targets (providers/gcp). Included by the main Makefile.

.PHONY: test-gcp bench-gcp fuzz-gcp e2e-gcp

test-gcp: ## Unit, conformance and fake-backed tests of the GCP provider.
	$(GO) test -count=1 ./providers/gcp/...

# bench-gcp: 100 Services under 30% injected throttling against the Compute
# fake; the output ends with the summary line
# gcp: create_calls=<n> resync_mutating=<n> node_change_calls=<n> throttled_failures=<n> op_failures_survived=<n>
bench-gcp: ## Benchmark the GCP provider's API economy against the Compute fake.
	@out=$$(mktemp); trap "rm -f $$out" EXIT; \
	PORTICO_GCP_BENCH_OUT=$$out $(GO) test -count=1 -run '^TestBenchGCP$$' -v ./providers/gcp/ | grep -v '^\(=== RUN\|--- PASS\|PASS$$\|ok \)'; \
	test -s $$out; cat $$out

fuzz-gcp: ## Run the GCP provider's fuzzers briefly.
	$(GO) test -run='^$$' -fuzz=FuzzParseAnnotations -fuzztime=20s ./providers/gcp/
	$(GO) test -run='^$$' -fuzz=FuzzParseProviderID -fuzztime=20s ./providers/gcp/

# e2e-gcp: a short scenario against a real project (create over given
# instances, connect, change ports, delete, list leftovers). Skips, saying
# what is missing, unless PORTICO_E2E_GCP_PROJECT, _REGION, _NETWORK and
# _INSTANCES (zone/name,...) are set; credentials come from Application
# Default Credentials. See docs/providers/gcp.md.
e2e-gcp: ## Check the GCP provider against a real project (skipped without credentials and a test network).
	$(GO) test -count=1 -timeout 45m -v -run '^TestE2EGCP$$' ./providers/gcp/e2e/
