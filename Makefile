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
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
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
build: ## Build bin/nsprov from cmd/webhook.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X github.com/nsprov/nsprov/cmd/webhook/app.Version=$(VERSION)" -o $(BIN)/nsprov ./cmd/webhook

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver, etcd, kube-controller-manager and kubectl into bin/k8s (skipped when present).
	@hack/control-plane.sh "$(ENVTEST_DIR)" >/dev/null

.PHONY: argo-assets
argo-assets: ## Build Argo's workflow-controller and argoexec into bin/argo (skipped when present).
	@hack/argo.sh "$(ARGO_DIR)" >/dev/null

##@ Test

.PHONY: test
test: vet envtest-assets argo-assets ## Run everything: go vet, unit tests, Rego tests and the envtest suites.
	$(GO) test $(GO_TEST_FLAGS) $$($(GO) list ./... | grep -v /test/envtest)
	@# Each envtest package starts a control plane of its own: one at a time, so
	@# two never compete for the 2 cores a CI machine has.
	KUBEBUILDER_ASSETS="$$(hack/control-plane.sh "$(ENVTEST_DIR)")" ARGO_ASSETS="$$(hack/argo.sh "$(ARGO_DIR)")" \
		$(GO) test -p 1 -timeout 30m $(GO_TEST_FLAGS) ./test/envtest/...

.PHONY: test-unit
test-unit: ## Run the tests that need no control plane (unit and Rego tests).
	$(GO) test $(GO_TEST_FLAGS) $$($(GO) list ./... | grep -v /test/envtest)

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 2m); the seeds alone run in every `go test`. Failing inputs land in testdata/fuzz.
	$(GO) test -run '^$$' -fuzz '^FuzzAdmissionReview$$' -fuzztime $(FUZZTIME) ./internal/admission/
	$(GO) test -run '^$$' -fuzz '^FuzzHandlers$$' -fuzztime $(FUZZTIME) ./internal/admission/
	$(GO) test -run '^$$' -fuzz '^FuzzCompiledMatchesTopdown$$' -fuzztime $(FUZZTIME) ./internal/policy/

.PHONY: lint-chart
lint-chart: ## Lint and render the Helm chart with Helm's Go library (no helm binary, no control plane).
	$(GO) test -count=1 -run 'TestLint|TestSchemaRejects|TestWebhooksMatchConfigurations|TestDeployment|TestCertManagerMode' ./test/envtest/chart/

.PHONY: bench
bench: ## Run the admission benchmarks (BENCH selects them).
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem ./internal/...

##@ Cleanup

.PHONY: clean
clean: ## Remove bin/ (including the cached control-plane binaries) and .dev/.
	rm -rf $(BIN) .dev
