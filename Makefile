# Gatehouse — the commands a newcomer and CI use. `make help` lists them.
CARGO ?= cargo
SHELL := /bin/bash
# The release build, defined once: `make bench` and the Dockerfile's build stage run
# exactly this (charts/tests checks the Dockerfile).
RELEASE_BUILD := $(CARGO) build --release --locked -p gatehouse
IMAGE ?= gatehouse:$(shell awk '/^appVersion:/ {gsub(/"/, "", $$2); print $$2}' charts/gatehouse/Chart.yaml)

.PHONY: help run build test check fmt lint unit conformance frontdoor waf e2e-kube e2e-kind bench-propagation crds docs bench bench-resilience bench-compiler clean chart-crds chart-test e2e-helm manifests image fuzz

help: ## this list
	@awk -F':.*## ' '/^[a-z0-9-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

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

test: check unit e2e-kube chart-test e2e-helm conformance frontdoor waf ## everything CI runs: format, clippy, unit + integration + e2e tests, the Helm chart
	@echo "make test: all checks passed"

check: ## formatting and clippy with warnings denied
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit: ## cargo test for the whole workspace (includes the built-binary e2e tests)
	$(CARGO) test --workspace --locked

e2e-kube: ## the controller suite against a kube-apiserver + etcd built from Go modules (root: uses a network namespace)
	e2e/kube/run.sh

chart-test: ## the Helm chart: helm lint --strict, Kubernetes 1.34 schemas, chart assertions, manifests current, lint every example
	e2e/tools/install.sh
	$(CARGO) build --locked -q -p gatehouse
	target/tools/venv/bin/python charts/tests/test_chart.py
	target/tools/venv/bin/python examples/test_examples.py

conformance: ## suites we did not write, against the built binary: h2spec (h2c and TLS), testssl.sh (the HTTPS listener)
	$(CARGO) build --locked -q -p gatehouse
	e2e/conformance/h2spec.sh all
	e2e/conformance/testssl.sh

waf: ## the WAF's false-positive and true-positive rates over e2e/waf's corpus (native rules, the OWASP CRS), with the targets checked
	$(CARGO) build --locked -q -p gatehouse -p gatehouse-testkit
	e2e/waf/run.sh

frontdoor: ## hostile traffic against the built binary: smuggling, injection, limits, slow clients, HTTP/2 floods, the path matrix
	$(CARGO) build --locked -q -p gatehouse
	e2e/frontdoor/run.sh

e2e-helm: ## helm install / upgrade (CRD gains a field) / uninstall against the e2e control plane (root: network namespace)
	e2e/helm/run.sh

chart-crds: ## copy crds/ into the chart (charts/gatehouse/files/crds.yaml)
	cp crds/gatehouse.dev_crds.yaml charts/gatehouse/files/crds.yaml

manifests: chart-crds ## regenerate manifests/install.yaml from the chart
	charts/render-install.sh > manifests/install.yaml

image: ## build the container image gatehouse:<chart appVersion> from the Dockerfile (needs a Docker engine)
	docker build -t $(IMAGE) .

bench-propagation: ## write-to-traffic latency through the real API server with 1,000 and 10,000 routes (p50/p99)
	e2e/kube/run.sh --bench

e2e-kind: ## the same suite against the cluster of KUBECONFIG (e.g. kind); see e2e/kube/README.md
	e2e/kube/kind.sh

FUZZ_SECONDS ?= 300
fuzz: ## fuzz JWT/JWKS parsing, the path normalizer, the router, the pushed-table decoder, the WAF's decoders and inspectors: FUZZ_SECONDS (300) per target (nightly; installs cargo-fuzz)
	rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	cargo +nightly fuzz --version >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --locked
	mkdir -p fuzz/corpus/jwt_token && cp bench/auth/token.txt fuzz/corpus/jwt_token/bench-token
	cd fuzz && cargo +nightly fuzz run -O jwt_token -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && cargo +nightly fuzz run -O jwks_document -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && cargo +nightly fuzz run -O path_normalize -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && cargo +nightly fuzz run -O router_match -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && cargo +nightly fuzz run -O table_decode -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && cargo +nightly fuzz run -O waf_inspect -- -max_total_time=$(FUZZ_SECONDS)

fmt: ## format the code
	$(CARGO) fmt --all

crds: ## regenerate crds/ and docs/reference.md from the Rust types (then the chart's copy and manifests/)
	UPDATE_CRDS=1 UPDATE_DOCS=1 $(CARGO) test -p gatehouse-api --test generated
	$(MAKE) manifests

bench: ## Gatehouse vs nginx vs HAProxy on this machine (installs nginx-light, haproxy, wrk, ModSecurity and the CRS)
	@command -v wrk >/dev/null && command -v nginx >/dev/null && command -v haproxy >/dev/null && \
	  dpkg -s libnginx-mod-http-modsecurity modsecurity-crs libmodsecurity3 >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light haproxy wrk \
	    libnginx-mod-http-modsecurity modsecurity-crs libmodsecurity3)
	$(CARGO) build --release --locked -p gatehouse -p gatehouse-testkit --bin gatehouse --bin otlp-sink
	python3 bench/run.py

bench-resilience: ## balancers under latency skew, retries against a 20% failure rate (installs wrk)
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	$(CARGO) build --release --locked -p gatehouse -p gatehouse-testkit
	python3 bench/resilience.py

bench-compiler: ## Criterion: compiling 10,000 routes over 1,000 upstreams
	$(CARGO) bench -p gatehouse-compiler --bench compile

clean:
	$(CARGO) clean
