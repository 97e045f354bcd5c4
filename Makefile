# Gatehouse — the commands a newcomer and CI use. `make help` lists them.
CARGO ?= cargo
SHELL := /bin/bash

.PHONY: help run build test check fmt lint unit e2e-kube e2e-kind bench-propagation crds docs bench bench-compiler clean

help: ## this list
	@awk -F':.*## ' '/^[a-z-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: ## serve examples/quickstart in front of a live echo upstream (Ctrl-C stops both)
	$(CARGO) build -q -p gatehouse -p gatehouse-testkit
	@echo "Try, in another terminal:"
	@echo "  curl -i http://127.0.0.1:8080/users/42          # proxied to the echo upstream"
	@echo "  curl -i http://127.0.0.1:8080/api/anything      # prefix route"
	@echo "  curl -i http://127.0.0.1:8080/status            # answered by the gateway"
	@echo "  curl -i http://127.0.0.1:8080/old/docs          # redirect"
	@echo "  curl -i -X DELETE http://127.0.0.1:8080/users/42 # 405 with Allow"
	@echo "  curl -i --http2-prior-knowledge http://127.0.0.1:8080/api/h2c  # h2c"
	@echo "  curl -s 'http://127.0.0.1:9901/explain?method=GET&url=http://localhost/users/42'"
	@echo "Edit examples/quickstart/gateway.yaml: changes apply live."
	@./target/debug/gatehouse-echo 127.0.0.1:9001 & echo_pid=$$!; \
	  trap 'kill $$echo_pid 2>/dev/null' EXIT INT TERM; \
	  ./target/debug/gatehouse run -f examples/quickstart

build: ## build the gatehouse binary (debug)
	$(CARGO) build -p gatehouse

test: check unit e2e-kube ## everything CI runs: format, clippy, unit + integration + e2e tests
	@echo "make test: all checks passed"

check: ## formatting and clippy with warnings denied
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit: ## cargo test for the whole workspace (includes the built-binary e2e tests)
	$(CARGO) test --workspace --locked

e2e-kube: ## the controller suite against a kube-apiserver + etcd built from Go modules (root: uses a network namespace)
	e2e/kube/run.sh

bench-propagation: ## write-to-traffic latency through the real API server with 1,000 and 10,000 routes (p50/p99)
	e2e/kube/run.sh --bench

e2e-kind: ## the same suite against the cluster of KUBECONFIG (e.g. kind); see e2e/kube/README.md
	e2e/kube/kind.sh

fmt: ## format the code
	$(CARGO) fmt --all

crds: ## regenerate crds/ and docs/reference.md from the Rust types
	UPDATE_CRDS=1 UPDATE_DOCS=1 $(CARGO) test -p gatehouse-api --test generated

bench: ## Gatehouse vs nginx vs HAProxy on this machine (installs nginx-light, haproxy, wrk)
	@command -v wrk >/dev/null && command -v nginx >/dev/null && command -v haproxy >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light haproxy wrk)
	$(CARGO) build --release -p gatehouse
	python3 bench/run.py

bench-compiler: ## Criterion: compiling 10,000 routes over 1,000 upstreams
	$(CARGO) bench -p gatehouse-compiler --bench compile

clean:
	$(CARGO) clean
