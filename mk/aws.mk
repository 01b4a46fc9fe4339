# AWS provider targets (providers/aws). Included by the main Makefile.

.PHONY: test-aws fuzz-aws bench-aws

test-aws: tools ## Unit, conformance, fake-backed and control-plane tests of the AWS provider.
	$(GO) test -count=1 ./providers/aws/...

fuzz-aws: ## Run the AWS provider's annotation fuzzer briefly.
	$(GO) test -run='^$$' -fuzz=FuzzParseAnnotations -fuzztime=20s ./providers/aws/

# bench-aws: API calls for the cluster's first create, a create, a no-op
# resync and a one-node change (targets start "initial"), then 100 Services
# under 30% injected throttling and 10% failed NLB creations, then 20 Services
# created at once at the default client-side rate limit, against the ELBv2/EC2
# fake; the output ends with the summary line
# aws: create_calls=<n> first_create_calls=<n> resync_mutating=<n> node_change_calls=<n> throttled_failures=<n> op_failures_survived=<n> burst20_address_seconds=<s>
bench-aws: ## Benchmark the AWS provider's API economy against the ELBv2/EC2 fake.
	$(GO) run ./providers/aws/internal/awsbench

.PHONY: e2e-aws
# e2e-aws: a short scenario against a real AWS account (create an NLB over
# PORTICO_E2E_AWS_INSTANCES, HTTP through it, add a port, delete, list
# leftovers with the run's ownership marks); skipped with a message when no
# instances or credentials are given. See docs/providers/aws.md.
e2e-aws: ## Check the AWS provider against a real account (needs credentials and a test network).
	$(GO) test -count=1 -v -timeout 45m -run TestRealAccount ./providers/aws/e2e/
