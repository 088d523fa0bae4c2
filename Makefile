# Interlock — make help lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := $(CURDIR)/.tools/bin
OPA_VERSION := v1.22.2
OPA := $(TOOLS)/opa
GRPCURL_VERSION := v1.9.3
GRPCURL := $(TOOLS)/grpcurl
GHZ_VERSION := v0.93.0
GHZ := $(TOOLS)/ghz
BUF_VERSION := 1.75.0
BUF_DIR := $(CURDIR)/.tools/buf
BUF := $(BUF_DIR)/node_modules/.bin/buf
BUF_STAMP := $(BUF_DIR)/.installed-$(BUF_VERSION)
PROTOS := $(wildcard protos/interlock/v1/*.proto)
GEN_DIR := clients/python
GEN_PROTOS := clients/python/scripts/gen_protos.py

.DEFAULT_GOAL := help

# The Go and TypeScript clients bring their own targets.
-include clients/go/client.mk
-include clients/typescript/client.mk

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

# The server and its client package, editable, at the versions constraints.txt pins.
$(VENV)/.installed: pyproject.toml clients/python/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ./clients/python -e '.[dev]'
	touch $@

# The regorus engine's binding (engines/regorus-py: Rust, PyO3), built by
# maturin (a dev dependency) with cargo in release mode into .venv. Without
# cargo, or when the build fails, it is left out (and tried again next time):
# engine regorus then falls back to embedded, saying so; tests/test_regorus_engine.py
# and the differential test fail without it, so make test notices.
REGORUS_DIR := engines/regorus-py
REGORUS_STAMP := $(VENV)/.regorus-installed
$(REGORUS_STAMP): $(VENV)/.installed $(wildcard $(REGORUS_DIR)/src/*.rs) $(REGORUS_DIR)/Cargo.toml $(REGORUS_DIR)/Cargo.lock $(REGORUS_DIR)/pyproject.toml
	@if command -v cargo >/dev/null; then \
		echo "building the regorus binding (engines/regorus-py, cargo --release; a few minutes the first time)"; \
		rm -rf $(REGORUS_DIR)/target/wheels && \
		$(VENV)/bin/maturin build --release --manifest-path $(REGORUS_DIR)/Cargo.toml \
			--interpreter $(PY) --out $(REGORUS_DIR)/target/wheels && \
		$(PY) -m pip install --quiet --no-deps --force-reinstall $(REGORUS_DIR)/target/wheels/*.whl && \
		touch $@ || echo "regorus: the binding did not build (engine regorus falls back to embedded)"; \
	else \
		echo "regorus: no cargo on this machine, the binding is not built (engine regorus falls back to embedded)"; \
	fi

.PHONY: regorus
regorus: $(REGORUS_STAMP) ## Build the regorus engine's binding (engines/regorus-py: cargo + maturin) into .venv

.PHONY: install
install: $(VENV)/.installed opa grpcurl regorus ## Create .venv with the server, client and dev tools; build opa, grpcurl and the regorus binding

$(OPA):
	mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) GOFLAGS=-mod=mod go install github.com/open-policy-agent/opa@$(OPA_VERSION)

.PHONY: constraints
constraints: $(VENV)/.installed ## Re-pin constraints.txt to what .venv holds (after changing a dependency range)
	{ sed -n '1,/^# Regenerate/p' constraints.txt; \
	  $(PY) -m pip freeze --exclude-editable --all | grep -viE '^(interlock|interlock-client)[ =@]|^pip=='; \
	} > constraints.txt.new && mv constraints.txt.new constraints.txt

.PHONY: opa
opa: $(OPA) ## Build the pinned OPA binary into .tools/bin (go install)

$(GRPCURL):
	mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) GOFLAGS=-mod=mod go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

.PHONY: grpcurl
grpcurl: $(GRPCURL) ## Build the pinned grpcurl into .tools/bin (used by the reflection test)

$(BUF_STAMP):
	rm -rf $(BUF_DIR) && mkdir -p $(BUF_DIR)
	npm install --no-audit --no-fund --no-save --prefix $(BUF_DIR) @bufbuild/buf@$(BUF_VERSION)
	touch $@

.PHONY: buf
buf: $(BUF_STAMP) ## Install the pinned buf CLI (npm @bufbuild/buf) into .tools/buf

.PHONY: buf-lint
buf-lint: $(BUF_STAMP) ## Lint protos/ with buf's STANDARD rules (buf.yaml records the one exception)
	$(BUF) lint

.PHONY: prometheus
prometheus: ## Install the prometheus binary (Debian package, needs root) for tests/test_prometheus.py
	@if ! command -v prometheus >/dev/null; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; fi

.PHONY: postgres
postgres: ## Install Debian's PostgreSQL server (needs root) for the journal's second backend (make test-postgres)
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; fi

.PHONY: chromium
chromium: ## Install Debian's chromium (needs root) for the console's browser tests (tests/console); nothing downloads a browser
	@if ! test -x /usr/bin/chromium; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi

.PHONY: proto
proto: $(VENV)/.installed ## Regenerate the Python gRPC stubs (clients/python/interlock_client/v1) from protos/
	$(PY) $(GEN_PROTOS) --protos protos $(GEN_DIR)

.PHONY: proto-check
proto-check: $(VENV)/.installed ## Fail if the committed stubs differ from freshly generated ones
	@tmp=$$(mktemp -d); \
	$(PY) $(GEN_PROTOS) --protos protos $$tmp >/dev/null && \
	diff -r -x __pycache__ $$tmp/interlock_client/v1 $(GEN_DIR)/interlock_client/v1 \
		&& echo "proto-check: generated code is fresh" \
		|| { echo "proto-check: stubs are stale; run make proto"; rm -rf $$tmp; exit 1; }; \
	rm -rf $$tmp

.PHONY: docs
docs: $(VENV)/.installed ## Regenerate docs/configuration.md from the config fields
	$(PY) docs/gen_configuration.py

.PHONY: fmt
fmt: $(VENV)/.installed opa ## Format Python (ruff) and Rego (opa fmt)
	$(VENV)/bin/ruff format server clients/python tests bench docs
	$(VENV)/bin/ruff check --fix server clients/python tests bench docs
	$(OPA) fmt -w policies

.PHONY: lint
lint: $(VENV)/.installed opa ## ruff, mypy --strict, opa fmt/check --strict
	$(VENV)/bin/ruff format --check server clients/python tests bench docs
	$(VENV)/bin/ruff check server clients/python tests bench docs
	$(VENV)/bin/mypy
	@test -z "$$($(OPA) fmt -l policies)" || { echo "opa fmt: unformatted files:"; $(OPA) fmt -l policies; exit 1; }
	$(OPA) check --strict policies

.PHONY: policy-test
policy-test: opa ## Run the Rego unit tests (opa test)
	$(OPA) test policies -v

.PHONY: alerts
alerts: prometheus ## Check the Prometheus config and alert rules, and run their unit tests (promtool)
	cd deploy && promtool check config prometheus.yml
	cd deploy/prometheus && promtool test rules alerts_test.yml

.PHONY: test
test: install prometheus chromium postgres ## Run every check and test: stubs, lint, policy tests, pytest (SQLite, then the API tests on PostgreSQL), the Go and TypeScript clients
	$(MAKE) --no-print-directory proto-check lint buf-lint policy-test alerts
	$(MAKE) --no-print-directory go-proto-check go-lint ts-install ts-proto-check ts-lint
	$(MAKE) --no-print-directory go-worker ts-build go-test ts-test
	INTERLOCK_OPA_BIN=$(OPA) INTERLOCK_GRPCURL_BIN=$(GRPCURL) $(PY) -m pytest
	$(MAKE) --no-print-directory test-postgres

.PHONY: test-postgres
test-postgres: install postgres ## The API tests (every test with an in-process server) again, on PostgreSQL (a throwaway cluster on a free loopback port)
	INTERLOCK_TEST_STORE=postgresql INTERLOCK_OPA_BIN=$(OPA) $(PY) -m pytest -m "api and not torture and not packaging" -q

.PHONY: test-fast
test-fast: $(VENV)/.installed opa ## Unit and Rego tests only, in seconds: opa test, pytest -m "not integration" (no server, OPA or other process)
	$(OPA) test policies
	$(PY) -m pytest -m "not integration" -q

.PHONY: torture
torture: install ## Only the torture suite (tests/torture: SIGKILLs, engine outage, full disk, hostile input); prints its figures
	INTERLOCK_OPA_BIN=$(OPA) $(PY) -m pytest -m torture tests/torture -q

.PHONY: bench
bench: install ## Benchmarks: RequestToolCall vs a bare gRPC echo (both engines), then bench-plans, then bench-policy
	INTERLOCK_OPA_BIN=$(OPA) $(PY) bench/bench_decisions.py
	$(PY) bench/bench_plans.py
	INTERLOCK_OPA_BIN=$(OPA) $(PY) bench/bench_policy.py $(BENCH_POLICY_ARGS)

.PHONY: conformance
conformance: install ## OPA's own conformance cases (its Go module's YAML, Rego v1) through regorus and regopy: the share each passes (CONFORMANCE_ARGS="--failures 20")
	$(PY) bench/conformance.py --opa-version $(OPA_VERSION) $(CONFORMANCE_ARGS)

.PHONY: bench-policy
bench-policy: install ## Benchmark: one policy evaluation, opa bench beside the embedded engine and regorus (BENCH_POLICY_ARGS="--policy-dir OLD --policy-dir policies" for before/after)
	INTERLOCK_OPA_BIN=$(OPA) $(PY) bench/bench_policy.py $(BENCH_POLICY_ARGS)

$(GHZ):
	mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) GOFLAGS=-mod=mod go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)

.PHONY: ghz
ghz: $(GHZ) ## Build the pinned ghz (gRPC load generator) into .tools/bin, for make bench-replicas and bench-ghz

.PHONY: bench-replicas
bench-replicas: install postgres ghz ## Benchmark: decisions/s and p50/p99 (ghz, c=1 and 64) on SQLite and on 1, 2, 3 replicas sharing PostgreSQL, with the database's CPU share
	$(PY) bench/bench_replicas.py

.PHONY: bench-ghz
bench-ghz: install ghz ## Benchmark (ghz, c=1 and 64): a bare grpc.aio health Check, Interlock's, RequestToolCall with the same and with new arguments on each engine; calls/s, x bare, p50/p99, issue 14's goals (BENCH_GHZ_ARGS="--json F --markdown F")
	INTERLOCK_OPA_BIN=$(OPA) $(PY) bench/bench_ghz.py $(BENCH_GHZ_ARGS)

.PHONY: bench-wasm
bench-wasm: install ## Benchmark: OPA's wasm target (opa build -t wasm) on wasmtime-py beside opa bench and regorus, decision.main (issue 14, lever 2)
	$(PY) bench/bench_wasm.py

.PHONY: bench-replay
bench-replay: install ## Benchmark: policy replay of 100,000 recorded decisions (decisions/s)
	$(PY) bench/bench_replay.py

.PHONY: bench-shadow
bench-shadow: install ## Benchmark: decisions/s with no shadow, a shadow sampling 0.1 and 1.0 of the decisions (same server, same run), with ratios
	$(PY) bench/shadow.py $(BENCH_SHADOW_ARGS)

.PHONY: bench-plans
bench-plans: install ## Benchmark: plans per second, and WatchEvents fan-out to 1,000 watchers vs a bare grpc.aio stream
	$(PY) bench/bench_plans.py

.PHONY: run
WORKERS ?= 1
run: $(VENV)/.installed ## Start the server on its embedded defaults (in-process Rego on regorus, or regopy without cargo; SQLite, loopback, insecure dev mode); the console on http://127.0.0.1:8080/. WORKERS=N (0: one per core) serves from N processes sharing the port and the SQLite file
	$(VENV)/bin/interlock serve --console-listen 127.0.0.1:8080 --workers $(WORKERS)

.PHONY: run-replicas
run-replicas: $(VENV)/.installed postgres ## Start a PostgreSQL cluster (var/replicas/postgres) and three replicas sharing it on 127.0.0.1:50051-50053 (dev mode); Ctrl-C stops all
	$(PY) -m interlock.devtools.replicas

.PHONY: clean
clean: ## Remove the venv, tools, caches and local state
	rm -rf $(VENV) .tools var .pytest_cache .ruff_cache .mypy_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
