##@ kubectl-lb and pricing

.PHONY: kubectl-lb
kubectl-lb: ## Build the kubectl plugin into bin/kubectl-lb (put it on PATH to use "kubectl lb").
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/kubectl-lb ./cmd/kubectl-lb

.PHONY: test-plugin
test-plugin: tools ## Price catalog and kubectl-lb tests, including the real kubectl against a real control plane.
	$(GO) test -count=1 ./pricing/... ./plugin/... ./cmd/kubectl-lb/...

.PHONY: update-plugin-golden
update-plugin-golden: ## Rewrite plugin/testdata/*.golden from the current output (review the diff!).
	$(GO) test ./plugin -run 'TestTables' -update

.PHONY: fuzz-pricing
fuzz-pricing: ## Fuzz the price file / ConfigMap parser for FUZZTIME (default 20s).
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=$${FUZZTIME:-20s} ./pricing
