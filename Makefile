# Micro-MCP. `make run` and `make test` work on a fresh clone: they install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

OPA_VERSION := v1.22.2
TOOLS_BIN   := $(CURDIR)/.tools/bin
OPA         := $(TOOLS_BIN)/opa
NODE_STAMP  := node_modules/.install-stamp
export PATH := $(TOOLS_BIN):$(PATH)

TEST_FILES = $$(find dist/src dist/services dist/test -name '*.test.js' 2>/dev/null | sort)

.PHONY: help setup build run test test-node lint bench bench-redact stress soak clean schemas soak-race sandbox-tools replica-tools

help:
	@echo "make run    - install, build and start the gateway on 127.0.0.1:8080 (dev mode; PORT=N for another port)"
	@echo "make test   - install, build, run every test (policy tests included)"
	@echo "make lint   - Biome (lint + format check), typecheck, opa fmt/check"
	@echo "make bench  - every path to one service (stdio, HTTP, gateway, mcp-proxy), decisions, memory, start (test/bench/RESULTS.md)"
	@echo "make soak-race - the fs directory/symlink swap race, long (20000 calls or 120 s per run)"
	@echo "make soak   - 16 agents for 10 min, stdio and remote services: RSS, p99, leaks every 30 s (test/bench/SOAK.md)"
	@echo "make stress - floods from hostile clients: connections held, memory, refusals (test/bench/STRESS.md)"
	@echo "make schemas - regenerate schemas/generated/ (TypeScript types) from schemas/*.schema.json"

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The pinned opa CLI, installed with the Go toolchain when missing or of another version.
$(OPA):
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) GOFLAGS=-mod=mod go install github.com/open-policy-agent/opa@$(OPA_VERSION)

opa-check: $(OPA)
	@$(OPA) version | grep -q "^Version: $(OPA_VERSION:v%=%)$$" || { rm -f $(OPA); $(MAKE) $(OPA); }

# bubblewrap: the OS sandbox every stdio service runs in unless its config says `sandbox: {mode: none}`
# (src/upstream/sandbox.ts). Installed from the Debian packages when missing and this user may (root,
# or sudo without a password); otherwise, or when it cannot create namespaces here, stop with the
# reason: sandboxed services would not start (fail closed), so neither make run nor make test can work.
sandbox-tools:
	@if ! command -v bwrap >/dev/null 2>&1; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "make: bubblewrap (bwrap) is missing and there is no apt-get to install it: install bubblewrap"; exit 1; \
	  elif [ "$$(id -u)" = 0 ]; then \
	    echo "make: installing bubblewrap (the services' sandbox)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	    echo "make: installing bubblewrap (the services' sandbox) with sudo"; \
	    sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	  else \
	    echo "make: bubblewrap (bwrap) is missing and cannot be installed here (needs root or sudo without a password):"; \
	    echo "      run 'sudo apt-get install bubblewrap' (the services run in it; see services/README.md)"; exit 1; \
	  fi; \
	fi
	@bwrap --unshare-user --unshare-pid --unshare-ipc --unshare-net --die-with-parent --ro-bind / / --proc /proc --dev /dev -- /bin/true \
	  || { echo "make: bwrap is installed but cannot create namespaces on this machine (user namespaces off?): sandboxed services will not start; see services/README.md"; exit 1; }

setup: $(NODE_STAMP) opa-check sandbox-tools

# redis-server and nginx from the Debian packages: only the tests of several replicas need them
# (test/e2e/replicas.test.ts; a gateway uses Redis only when `state.redis` is configured).
replica-tools:
	@missing=""; for p in redis-server:redis-server nginx:nginx; do command -v $${p%%:*} >/dev/null 2>&1 || missing="$$missing $${p##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing$$missing (for the tests of several replicas)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	    echo "make: installing$$missing with sudo (for the tests of several replicas)"; \
	    sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "make:$$missing missing and cannot be installed here (needs root or sudo without a password): apt-get install$$missing"; exit 1; \
	  fi; \
	fi

# A clean build: a renamed or deleted source must not leave a stale compiled test behind. Then the
# programs that run as processes (the gateway's command, each service) are bundled in place, their
# shared code in dist/chunks/ and dist/services/chunks/ (bin/bundle.mjs: they start sooner).
build: $(NODE_STAMP)
	rm -rf dist
	npx tsc -p tsconfig.json
	node bin/bundle.mjs

run: setup build
	node dist/src/cli/main.js vector index services/fs/sample --collection sample
	bin/micro-mcp serve --dev $(if $(PORT),--port $(PORT))

test: setup replica-tools build
	npx biome check .
	$(OPA) fmt --list --fail policies/rego
	$(OPA) check --strict -s schemas/policy-input.schema.json policies/rego
	$(OPA) test -s schemas/policy-input.schema.json policies/rego
	node dist/src/cli/main.js policy parity --count 10000 --seed 1 | tail -n 3
	$(MAKE) --no-print-directory test-node

test-node:
	node --test --test-concurrency=2 --test-timeout=180000 $(TEST_FILES)

lint: setup
	npx biome check .
	npx tsc -p tsconfig.json --noEmit
	$(OPA) fmt --list --fail policies/rego
	$(OPA) check --strict -s schemas/policy-input.schema.json policies/rego

# The types in schemas/generated/ come from the JSON Schemas; run after editing a schema and commit
# the result (src/config/schema-types.test.ts fails while they differ).
schemas: $(NODE_STAMP)
	node schemas/generate-types.mjs

# The fs race test of make test, long: many more calls against the swapper (test/e2e/fs-race.test.ts).
soak-race: setup build
	MICRO_MCP_RACE_CALLS=20000 MICRO_MCP_RACE_MS=120000 node --test --test-timeout=600000 dist/test/e2e/fs-race.test.js

stress: setup build
	node dist/test/bench/stress.js

# SOAK_MINUTES, SOAK_REPORT_S, SOAK_AGENTS, SOAK_RSS_SLACK_MIB tune it (test/bench/soak.ts).
soak: setup build
	node dist/test/bench/soak.js

bench: setup build
	node dist/test/bench/run.js
	node dist/test/bench/redact.js

# Redaction cost per MB and on the adversarial corpus (test/bench/REDACT.md).
bench-redact: setup build
	node dist/test/bench/redact.js

clean:
	rm -rf dist
