# Portico's build. Go tools are pinned in hack/tools/go.mod (kwok in
# hack/tools/kwok/go.mod, promtool in hack/tools/promtool/go.mod) and built by hack/build-tools.sh into a cache keyed
# on those pins.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/portico-lb/portico/internal/version.Version=$(VERSION)
TOOLS_BIN = $(shell hack/build-tools.sh --print)
# Tests, the e2e binaries and "make build" compile with the same settings, so
# they share one build cache: static (no cgo) and path-trimmed, as the images.
export CGO_ENABLED := 0
export GOFLAGS := $(strip $(GOFLAGS) -trimpath)
BINARIES := portico-operator portico-forwarder kubectl-lb
BIN ?= bin
export KUBEBUILDER_ASSETS = $(TOOLS_BIN)

.PHONY: all
all: build

##@ Build

.PHONY: build
build: ## Build the three binaries into bin/.
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(BINARIES))

.PHONY: tools
tools: ## Build the pinned tools (kube-apiserver, kube-controller-manager, etcd, kubectl, kwok, controller-gen, staticcheck, helm) into the cache.
	@hack/build-tools.sh >/dev/null

.PHONY: generate
generate: tools ## Generate deepcopy code.
	$(TOOLS_BIN)/controller-gen object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: tools ## Generate CRDs and the operator's ClusterRole from markers.
	$(TOOLS_BIN)/controller-gen crd:crdVersions=v1 paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(TOOLS_BIN)/controller-gen rbac:roleName=portico-operator paths="{./controllers/...,./providers/local/...}" output:rbac:artifacts:config=config/rbac
	cp config/crd/bases/*.yaml config/helm/portico/crds/

.PHONY: verify
verify: generate manifests ## Fail when generated files are stale.
	@git diff --exit-code -- api config/crd config/rbac config/helm/portico/crds || { echo "generated files are stale: run 'make generate manifests' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- api config/crd config/rbac config/helm/portico/crds)" || { git status --porcelain -- api config/crd config/rbac config/helm/portico/crds; echo "untracked generated files"; exit 1; }

.PHONY: lint
lint: tools ## gofmt, go vet and staticcheck.
	@out=$$(gofmt -l $$(git ls-files '*.go')); test -z "$$out" || { echo "not gofmt-formatted:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(TOOLS_BIN)/staticcheck ./...

##@ Test

.PHONY: test
test: tools ## Unit, integration (real kube-apiserver + etcd, kube-controller-manager and kwok where needed), e2e tests and a 2-minute soak (root).
	$(GO) test -count=1 -timeout 30m ./...
	cd e2e/monitoring && $(GO) test -count=1 -timeout 10m ./...
	@hack/check-leftovers.sh
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory soak; else echo "soak skipped: it needs root (network namespaces)"; fi

# SOAK_MINUTES is the soak's duration; make test runs the default.
SOAK_MINUTES ?= 2

.PHONY: soak
soak: tools build ## Operator, three forwarders and kwok nodes under Service, workload and node churn for SOAK_MINUTES (default 2; root).
	$(GO) run ./bench/soak --minutes $(SOAK_MINUTES) --operator $(BIN)/portico-operator --forwarder $(BIN)/portico-forwarder
	@hack/check-leftovers.sh

.PHONY: e2e
e2e: tools build ## End-to-end tests in network namespaces (root).
	$(GO) test -count=1 -timeout 20m ./e2e/...
	@hack/check-leftovers.sh

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (default 10s).
	@hack/fuzz-all.sh $${FUZZTIME:-10s}

##@ Benchmarks (each prints one final key=value line)

.PHONY: bench
bench: bench-reconcile bench-scale ## Run the benchmarks.

.PHONY: bench-scale
bench-scale: tools build ## 5,000 kwok nodes and 10,000 memory Services created while the operator is stopped, then the operator starts.
	$(GO) run ./bench/scale --nodes 5000 --services 10000 --operator $(BIN)/portico-operator

.PHONY: bench-reconcile
bench-reconcile: tools build ## 1,000 LoadBalancer Services on the real control plane (kwok nodes), memory provider.
	$(GO) run ./bench/reconcile --operator bin/portico-operator

##@ Run

.PHONY: demo
demo: ## Run Portico's local mode on the embedded control plane (root). DOWN=1 tears it down.
	@hack/demo.sh $(if $(DOWN),--down,)

.PHONY: docker-build
docker-build: ## Build the container images with a Docker engine ("make images" needs none).
	for t in operator forwarder kubectl-lb; do docker build --target $$t --build-arg VERSION=$(VERSION) -t $(REGISTRY)/$$t:$(VERSION) . ; done

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

-include mk/*.mk
