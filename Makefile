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

.PHONY: help setup build run test test-node lint bench clean schemas

help:
	@echo "make run    - install, build and start the gateway on 127.0.0.1:8080 (dev mode)"
	@echo "make test   - install, build, run every test (policy tests included)"
	@echo "make lint   - Biome (lint + format check), typecheck, opa fmt/check"
	@echo "make bench  - gateway vs direct benchmarks (test/bench)"
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

setup: $(NODE_STAMP) opa-check

# A clean build: a renamed or deleted source must not leave a stale compiled test behind.
build: $(NODE_STAMP)
	rm -rf dist
	npx tsc -p tsconfig.json

run: setup build
	node dist/src/cli/main.js serve --dev

test: setup build
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

bench: setup build
	node dist/test/bench/run.js

clean:
	rm -rf dist
