# Container images and release artifacts (hack/images, .github/workflows/release.yml).
# Included by the main Makefile. "make images" needs no container engine and
# no registry: Go builds the binaries, apt-get downloads the forwarder's
# Debian packages (for arm64: dpkg --add-architecture arm64 && apt-get update)
# and hack/images (go-containerregistry) writes OCI image layouts.

REGISTRY ?= ghcr.io/portico-lb
PLATFORMS ?= linux/amd64,linux/arm64
IMAGES_DIR ?= $(BIN)/images
CHART_DIR ?= $(BIN)/charts
RELEASE_DIR ?= $(BIN)/release
# The images' timestamps: SOURCE_DATE_EPOCH if set, else the commit time.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
CRANE ?= $(GO) run github.com/google/go-containerregistry/cmd/crane@v0.22.1
COSIGN ?= cosign
HELM ?= $(TOOLS_BIN)/helm
# The Debian architectures of PLATFORMS other than this machine's.
FOREIGN_ARCHES = $(filter-out $(shell dpkg --print-architecture 2>/dev/null),$(patsubst linux/%,%,$(subst $(comma), ,$(PLATFORMS))))
comma := ,
# The chart's version: VERSION without its leading v (SemVer).
CHART_VERSION ?= $(patsubst v%,%,$(VERSION))

.PHONY: image-deps images test-images registry-login push-images sign-images chart push-chart release-binaries

##@ Images and release

image-deps: ## Debian tools and package lists "make images" needs (apt-get; adds the foreign architectures of PLATFORMS). Root.
	$(foreach a,$(FOREIGN_ARCHES),dpkg --add-architecture $(a);)
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends dpkg apt ca-certificates git

images: ## OCI layouts, archives and SBOMs of the three images for PLATFORMS into IMAGES_DIR (no engine, no registry).
	$(GO) run ./hack/images --version $(VERSION) --registry $(REGISTRY) --platforms $(PLATFORMS) \
		--source-date-epoch $(SOURCE_DATE_EPOCH) --out $(IMAGES_DIR)

test-images: ## Build the images for this machine and test them: contents, reproducibility, and (root, podman) running them.
	$(GO) test -count=1 -timeout 15m ./hack/images/

registry-login: ## Log crane, cosign and helm in to REGISTRY's host as REGISTRY_USER with $$REGISTRY_PASSWORD.
	@test -n "$${REGISTRY_PASSWORD:-}" || { echo "REGISTRY_PASSWORD is empty"; exit 1; }
	@printf '%s' "$$REGISTRY_PASSWORD" | $(CRANE) auth login $(firstword $(subst /, ,$(REGISTRY))) -u $(REGISTRY_USER) --password-stdin
	@printf '%s' "$$REGISTRY_PASSWORD" | $(HELM) registry login $(firstword $(subst /, ,$(REGISTRY))) -u $(REGISTRY_USER) --password-stdin

push-images: ## Push the image indexes in IMAGES_DIR to REGISTRY (after "make images"; needs registry credentials).
	@test -f $(IMAGES_DIR)/digests.txt || { echo "no $(IMAGES_DIR)/digests.txt: run make images first"; exit 1; }
	for c in operator forwarder kubectl-lb; do $(CRANE) push $(IMAGES_DIR)/$$c $(REGISTRY)/$$c:$(VERSION); done

sign-images: ## Sign the pushed image indexes by digest with cosign (keyless in CI).
	@test -f $(IMAGES_DIR)/digests.txt || { echo "no $(IMAGES_DIR)/digests.txt: run make images first"; exit 1; }
	awk '$$2 == "index" { split($$1, r, ":"); print r[1] "@" $$3 }' $(IMAGES_DIR)/digests.txt | \
		while read -r ref; do $(COSIGN) sign --yes "$$ref"; done
	for s in $(IMAGES_DIR)/*.spdx.json; do \
		c=$$(basename $$s .spdx.json); c=$${c%-linux-*}; \
		d=$$(awk -v img="$(REGISTRY)/$$c:$(VERSION)" '$$1 == img && $$2 == "index" { print $$3 }' $(IMAGES_DIR)/digests.txt); \
		$(COSIGN) attest --yes --type spdxjson --predicate $$s "$(REGISTRY)/$$c@$$d"; done

chart: ## Package the Helm chart (version CHART_VERSION, appVersion VERSION) into CHART_DIR.
	@mkdir -p $(CHART_DIR)
	$(HELM) package config/helm/portico --version $(CHART_VERSION) --app-version $(VERSION) -d $(CHART_DIR)

push-chart: chart ## Push the packaged chart to oci://REGISTRY/charts (needs helm registry login).
	$(HELM) push $(CHART_DIR)/portico-$(CHART_VERSION).tgz oci://$(REGISTRY)/charts

release-binaries: ## Static binaries for PLATFORMS as tar.gz with SHA256SUMS into RELEASE_DIR.
	@rm -rf $(RELEASE_DIR) && mkdir -p $(RELEASE_DIR)
	for p in $$(echo $(PLATFORMS) | tr , ' '); do \
		os=$${p%%/*}; arch=$${p#*/}; d=$(RELEASE_DIR)/portico-$(VERSION)-$$os-$$arch; \
		GOOS=$$os GOARCH=$$arch CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$d/ $(addprefix ./cmd/,$(BINARIES)); \
		cp LICENSE $$d/; \
		tar --sort=name --mtime=@$(SOURCE_DATE_EPOCH) --owner=0 --group=0 --numeric-owner -C $(RELEASE_DIR) -cf - $$(basename $$d) | gzip -n > $$d.tar.gz; \
		rm -rf $$d; done
	cd $(RELEASE_DIR) && sha256sum *.tar.gz > SHA256SUMS
