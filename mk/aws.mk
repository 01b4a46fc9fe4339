# AWS provider (providers/aws): tests against the wire-level fake and the
# API-call benchmark. The benchmark's last line is the summary:
#   aws: create_calls=<n> resync_mutating=<n> node_change_calls=<n> throttled_failures=<n>
GO ?= go

.PHONY: test-aws fuzz-aws bench-aws

test-aws:
	$(GO) test -count=1 ./providers/aws/...

fuzz-aws:
	$(GO) test -run='^$$' -fuzz=FuzzParseAnnotations -fuzztime=20s ./providers/aws

bench-aws:
	$(GO) run ./providers/aws/internal/awsbench
