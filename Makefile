# modeldeploy: `make dev` for the playground, `make test` for the whole suite.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STATE_DIR ?= .dev
CLUSTER_STATE := $(STATE_DIR)/cluster

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-20s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[operator,runtime,dev]'
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv with the operator, runtime and dev dependencies

.PHONY: host-packages
host-packages: ## Install the Debian packages the real node and image builds need (runc, iptables, buildah...), if missing
	@devcluster/install-host-packages.sh

.PHONY: binaries
binaries: host-packages ## Build (once, cached outside the repo) etcd, kube-*, kubelet, containerd, CNI, kwok and helm
	devcluster/build-binaries.sh >/dev/null

.PHONY: cluster-up
cluster-up: venv binaries ## Start the local cluster (GPU nodes simulated, one real node): eval "$(make -s cluster-up)"
	@$(PY) -m modeldeploy_devcluster up --state-dir $(CLUSTER_STATE) $(CLUSTER_ARGS)

.PHONY: cluster-down
cluster-down: ## Stop exactly what cluster-up started and remove its data
	@if [ -x $(PY) ]; then $(PY) -m modeldeploy_devcluster down --state-dir $(CLUSTER_STATE); fi

.PHONY: test-devcluster
test-devcluster: venv binaries ## Tests of the local control plane harness (starts its own clusters)
	$(VENV)/bin/pytest -q tests/devcluster

.PHONY: lint
lint: venv ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy operator/modeldeploy_operator runtime/modeldeploy_runtime devcluster/modeldeploy_devcluster

.PHONY: images
images: venv host-packages ## Build the runtime and operator images without Docker (cached by their inputs); import them into cluster-up's real node
	$(PY) -m modeldeploy_devcluster images --state-dir $(CLUSTER_STATE)

.PHONY: test
test: venv binaries images ## The whole suite: lint, unit, runtime, control-plane integration, chart, benchmarks' quick checks, end to end on real pods
	$(MAKE) lint
	$(VENV)/bin/pytest -q

.PHONY: crds
crds: venv ## Render crds/ from the pydantic models (the one source of truth)
	$(PY) -m modeldeploy_operator.api.crd > crds/modeldeployments.serving.modeldeploy.dev.yaml
	$(PY) charts/render_crd_template.py > charts/modeldeploy/templates/crd.yaml

.PHONY: test-unit
test-unit: venv ## Unit tests of pure functions (no cluster)
	$(VENV)/bin/pytest -q tests/unit

.PHONY: run-operator
run-operator: venv ## Run the operator against $$KUBECONFIG
	$(PY) -m modeldeploy_operator --bind-address 127.0.0.1

.PHONY: dev
dev: venv binaries images ## The playground: cluster, operator pod, samples served by real runtime pods (Ctrl-C stops)
	$(PY) -m modeldeploy_devcluster.playground up --state-dir $(STATE_DIR)/playground

.PHONY: dev-down
dev-down: ## Stop a playground left running
	@if [ -x $(PY) ]; then $(PY) -m modeldeploy_devcluster.playground down --state-dir $(STATE_DIR)/playground; fi

.PHONY: bench-operator
bench-operator: venv binaries ## Operator at scale: N=100 and N=1000 ModelDeployments against the floor (own cluster, ~15 min); BENCH_ARGS="--operator-env MODELDEPLOY_X=V"
	$(PY) benchmarks/operator_scale.py --n 100 --n 1000 $(BENCH_ARGS)

.PHONY: bench-operator-unrelated
bench-operator-unrelated: venv binaries ## Operator cluster-wide at N=1000, then again among 50,000 churning unrelated pods (issue 10's size; ~25 min on 2 cores); BENCH_ARGS="--unrelated-pods 10000"
	$(PY) benchmarks/operator_scale.py --n 1000 --unrelated-pods 50000 $(BENCH_ARGS)

.PHONY: bench-operator-10k
bench-operator-10k: venv binaries ## Operator cluster-wide at N=10,000, controller-manager's client rate limit raised for floor and operator alike (2 hours or more on 2 cores)
	$(PY) benchmarks/operator_scale.py --n 10000 --cluster-scope --controller-manager-qps 500 --controller-manager-burst 1000 --phase-timeout 7200 $(BENCH_ARGS)

.PHONY: bench-resource-cost
bench-resource-cost: venv binaries ## What one ModelDeployment costs the apiserver by itself, by CRD part (CEL rules, defaults, schema) against a ConfigMap (~5 min)
	$(PY) benchmarks/resource_cost.py $(BENCH_ARGS)

.PHONY: chart-lint
chart-lint: binaries ## helm lint --strict of charts/modeldeploy (defaults, and the namespaced RBAC mode)
	helm="$$(devcluster/build-binaries.sh)/helm" && $$helm lint --strict charts/modeldeploy \
	  && $$helm lint --strict charts/modeldeploy --set watch.scope=namespaces --set 'watch.namespaces={team-a}'

.PHONY: test-chart
test-chart: venv binaries ## Chart: render, lint, server dry-run, install + RBAC proof, upgrade, uninstall, failover, GitOps health
	$(VENV)/bin/pytest -q tests/chart

.PHONY: test-runtime
test-runtime: venv ## Runtime tests: real uvicorn servers on free ports, real torch models (a few minutes)
	$(VENV)/bin/pytest -q tests/runtime

.venv-kserve/.installed: $(VENV)/.installed benchmarks/setup_kserve_venv.sh
	PYTHON=$(PYTHON) benchmarks/setup_kserve_venv.sh

.PHONY: bench-runtime
bench-runtime: venv .venv-kserve/.installed ## Runtime vs raw torch vs KServe ModelServer under wrk (~15 min); BENCH_ARGS="--device cuda"
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(PY) benchmarks/bench_runtime.py $(BENCH_ARGS)

.PHONY: bench-llm
bench-llm: venv ## Text generation: this runtime vs transformers serve (with and without continuous batching) vs one at a time, concurrency 1/8/32 (~10 min on 2 cores)
	$(PY) benchmarks/bench_llm.py $(BENCH_ARGS)
