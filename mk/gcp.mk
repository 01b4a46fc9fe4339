# GCP provider targets (providers/gcp). Included by the main Makefile.

.PHONY: test-gcp bench-gcp fuzz-gcp

test-gcp: ## Unit, conformance and fake-backed tests of the GCP provider.
	$(GO) test -count=1 ./providers/gcp/...

# bench-gcp: 100 Services under 30% injected throttling against the Compute
# fake; the output ends with the summary line
# gcp: create_calls=<n> resync_mutating=<n> node_change_calls=<n> throttled_failures=<n>
bench-gcp: ## Benchmark the GCP provider's API economy against the Compute fake.
	@out=$$(mktemp); trap "rm -f $$out" EXIT; \
	PORTICO_GCP_BENCH_OUT=$$out $(GO) test -count=1 -run '^TestBenchGCP$$' -v ./providers/gcp/ | grep -v '^\(=== RUN\|--- PASS\|PASS$$\|ok \)'; \
	test -s $$out; cat $$out

fuzz-gcp: ## Run the GCP provider's fuzzers briefly.
	$(GO) test -run='^$$' -fuzz=FuzzParseAnnotations -fuzztime=20s ./providers/gcp/
	$(GO) test -run='^$$' -fuzz=FuzzParseProviderID -fuzztime=20s ./providers/gcp/
