# nsprov: namespace self-service with admission policies and Argo provisioning.
# Run `make help` for the targets.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO ?= go
BIN := $(CURDIR)/bin
# Control-plane binaries for envtest. KUBEBUILDER_ASSETS set by the user wins.
ENVTEST_DIR := $(BIN)/k8s
# Argo's workflow-controller and argoexec for the provisioning. ARGO_ASSETS set by the user wins.
ARGO_DIR := $(BIN)/argo
# Prometheus' promtool for the alert tests. PROMTOOL set by the user wins.
PROMTOOL_DIR := $(BIN)/prometheus
# A release is the commit tagged v<appVersion of charts/nsprov/Chart.yaml>:
# its VERSION is that appVersion, without the v (the image tag the chart defaults to).
VERSION ?= $(shell v="$$(git describe --tags --always --dirty --match 'v[0-9]*' 2>/dev/null)" && echo "$${v#v}" || echo dev)
GO_TEST_FLAGS ?=
BENCH ?= .
FUZZTIME ?= 2m

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
		/^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } \
		/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: fmt
fmt: ## Format the Go code.
	$(GO) fmt ./...

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: policy-test
policy-test: ## Run the Rego tests of the embedded bundle, reported like opa test.
	$(GO) run ./cmd/webhook policy test --verbose

.PHONY: docs
docs: ## Regenerate docs/cli.md and charts/nsprov/README.md from the commands and the chart (their tests fail when they are stale).
	NSPROV_UPDATE_DOCS=1 $(GO) test -count=1 -run '^(TestCLIReferenceIsCurrent|TestChartReadmeIsCurrent)$$' ./cmd/webhook/app/ ./hack/gendocs/

##@ Run

.PHONY: dev
dev: envtest-assets argo-assets build ## Run nsprov locally: kube-apiserver, etcd, webhooks, controller; .dev/kubeconfig has contexts admin, alice, bob (POLICY_DIR=dir serves and watches a policy copy).
	$(GO) build -o $(BIN)/nsprov-dev ./test/envtest/cmd/nsprov-dev
	KUBEBUILDER_ASSETS="$$(hack/control-plane.sh "$(ENVTEST_DIR)")" ARGO_ASSETS="$$(hack/argo.sh "$(ARGO_DIR)")" \
		exec $(BIN)/nsprov-dev --state-dir .dev

##@ Build

.PHONY: build
build: ## Build bin/nsprov from cmd/webhook, and bin/kubectl-nsprov (a link: the kubectl plugin).
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X github.com/nsprov/nsprov/cmd/webhook/app.Version=$(VERSION)" -o $(BIN)/nsprov ./cmd/webhook
	ln -sf nsprov $(BIN)/kubectl-nsprov

.PHONY: image
image: ## Build the nsprov image (linux/amd64, linux/arm64; no Docker needed) into bin/image: OCI layout bin/image/oci, docker-load tarballs bin/image/nsprov-ARCH.tar.
	VERSION="$(VERSION)" hack/image.sh "$(BIN)/image"

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver, etcd, kube-controller-manager and kubectl into bin/k8s (skipped when present).
	@hack/control-plane.sh "$(ENVTEST_DIR)" >/dev/null

.PHONY: argo-assets
argo-assets: ## Build Argo's workflow-controller and argoexec into bin/argo (skipped when present).
	@hack/argo.sh "$(ARGO_DIR)" >/dev/null

.PHONY: promtool
promtool: ## Build Prometheus' promtool into bin/prometheus for the alert tests (skipped when present).
	@hack/promtool.sh "$(PROMTOOL_DIR)" >/dev/null

##@ Test

.PHONY: test
test: vet envtest-assets argo-assets promtool ## Run everything: go vet, unit tests, Rego tests, the image and alert tests and the envtest suites.
	$(GO) test $(GO_TEST_FLAGS) $$($(GO) list ./... | grep -v /test/envtest)
	@# The image builder is a module of its own (hack/image/go.mod).
	cd hack/image && $(GO) vet ./... && $(GO) test -timeout 30m $(GO_TEST_FLAGS) ./...
	@# Each envtest package starts a control plane of its own: one at a time, so
	@# two never compete for the 2 cores a CI machine has.
	KUBEBUILDER_ASSETS="$$(hack/control-plane.sh "$(ENVTEST_DIR)")" ARGO_ASSETS="$$(hack/argo.sh "$(ARGO_DIR)")" \
		PROMTOOL="$$(hack/promtool.sh "$(PROMTOOL_DIR)")" \
		$(GO) test -p 1 -timeout 30m $(GO_TEST_FLAGS) ./test/envtest/...

.PHONY: test-unit
test-unit: ## Run the tests that need no control plane (unit and Rego tests).
	$(GO) test $(GO_TEST_FLAGS) $$($(GO) list ./... | grep -v /test/envtest)

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 2m); the seeds alone run in every `go test`. Failing inputs land in testdata/fuzz.
	$(GO) test -run '^$$' -fuzz '^FuzzAdmissionReview$$' -fuzztime $(FUZZTIME) ./internal/admission/
	$(GO) test -run '^$$' -fuzz '^FuzzHandlers$$' -fuzztime $(FUZZTIME) ./internal/admission/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeNamespace$$' -fuzztime $(FUZZTIME) ./internal/admission/
	$(GO) test -run '^$$' -fuzz '^FuzzDecisionLine$$' -fuzztime $(FUZZTIME) ./internal/audit/
	$(GO) test -run '^$$' -fuzz '^FuzzCompiledMatchesTopdown$$' -fuzztime $(FUZZTIME) ./internal/policy/

.PHONY: lint-chart
lint-chart: ## Lint and render the Helm chart with Helm's Go library (no helm binary, no control plane).
	$(GO) test -count=1 -run 'TestLint|TestSchemaRejects|TestWebhooksMatchConfigurations|TestDeployment|TestCertManagerMode' ./test/envtest/chart/

.PHONY: bench
bench: ## Run the admission benchmarks (BENCH selects them).
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem ./internal/...

BENCH_WEBHOOK_FLAGS ?=
.PHONY: bench-webhook
bench-webhook: envtest-assets build ## Measure nsprov serve beside an always-allow controller-runtime webhook server (throughput, latency, CPU per request; BENCH_WEBHOOK_FLAGS adds flags).
	$(GO) build -o $(BIN)/benchwebhook ./hack/benchwebhook
	KUBEBUILDER_ASSETS="$$(hack/control-plane.sh "$(ENVTEST_DIR)")" $(BIN)/benchwebhook --nsprov $(BIN)/nsprov $(BENCH_WEBHOOK_FLAGS)

##@ Cleanup

.PHONY: clean
clean: ## Remove bin/ (including the cached control-plane binaries) and .dev/.
	rm -rf $(BIN) .dev
