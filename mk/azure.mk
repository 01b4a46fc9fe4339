# Azure provider (providers/azure). Included by the main Makefile.

.PHONY: test-azure bench-azure fuzz-azure e2e-azure

## test-azure: unit, conformance and wire-fake tests of the azure provider
test-azure:
	$(GO) test ./providers/azure/...

## bench-azure: 100 Services against the fake ARM endpoint; the last line is the summary
bench-azure:
	@out=$$($(GO) test -run '^$$' -bench '^BenchmarkAzure$$' -benchtime 1x ./providers/azure/ 2>&1); rc=$$?; \
	printf '%s\n' "$$out" | grep -v '^azure: ' | grep -v 'TLS handshake error'; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; \
	printf '%s\n' "$$out" | grep '^azure: ' | tail -n 1

## fuzz-azure: run each azure fuzzer briefly
fuzz-azure:
	$(GO) test -run '^$$' -fuzz '^FuzzParseAnnotations$$' -fuzztime 20s ./providers/azure/
	$(GO) test -run '^$$' -fuzz '^FuzzParseFileConfig$$' -fuzztime 20s ./providers/azure/
	$(GO) test -run '^$$' -fuzz '^FuzzDescriptionMarks$$' -fuzztime 20s ./providers/azure/

## e2e-azure: a short scenario against a real Azure account (PORTICO_E2E_AZURE_* settings, see docs/providers/azure.md); skipped with a message without them
e2e-azure:
	$(GO) test -count=1 -v -timeout 30m -run '^TestAzureRealAccount$$' ./providers/azure/e2e/
