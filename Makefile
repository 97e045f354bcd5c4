# Gatehouse — the commands a newcomer and CI use. `make help` lists them.
CARGO ?= cargo
SHELL := /bin/bash

.PHONY: help build test check fmt lint unit crds docs bench-compiler clean

help: ## this list
	@awk -F':.*## ' '/^[a-z-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build the gatehouse binary (debug)
	$(CARGO) build -p gatehouse

test: check unit ## everything CI runs: format, clippy, unit + integration + e2e tests
	@echo "make test: all checks passed"

check: ## formatting and clippy with warnings denied
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit: ## cargo test for the whole workspace (includes the built-binary e2e tests)
	$(CARGO) test --workspace --locked

fmt: ## format the code
	$(CARGO) fmt --all

crds: ## regenerate crds/ and docs/reference.md from the Rust types
	UPDATE_CRDS=1 UPDATE_DOCS=1 $(CARGO) test -p gatehouse-api --test generated

bench-compiler: ## Criterion: compiling 10,000 routes over 1,000 upstreams
	$(CARGO) bench -p gatehouse-compiler --bench compile

clean:
	$(CARGO) clean
