# Triage: `make demo` and `make test` are the two entry points (see README.md).

SHELL := /bin/bash

# Build outside the clone when /var/cache is writable, so repeat runs stay warm.
CARGO_TARGET_DIR ?= $(shell [ -w /var/cache ] && echo /var/cache/triage/target || echo $(CURDIR)/target)
export CARGO_TARGET_DIR
WASM_TARGET_DIR := $(CARGO_TARGET_DIR)/wasm-workloads
WASM_DIR := $(WASM_TARGET_DIR)/wasm32-wasip1/release
# The same workloads as WASI 0.2 components, and the HTTP services (test-images/wasm/serve).
COMPONENTS_DIR := $(WASM_TARGET_DIR)/wasm32-wasip2/release
COMPONENT_WORKLOADS := hello exit trap sleeper fsprobe spin memhog waiter http-hello http-state http-egress tcp-echo http-classify http-snap
JOBS ?= 2
# CI builds once, from scratch: incremental compilation caches only cost time there.
ifeq ($(CI),true)
export CARGO_INCREMENTAL := 0
endif
CARGO := cargo
RELEASE := $(CARGO_TARGET_DIR)/release
SHIM := $(RELEASE)/containerd-shim-triage-v1
IMAGES := dist/images
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: all setup build test-images wit-bindings demo test test-wasmedge lint install uninstall bench bench-wasmedge clean

all: build

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --release -j $(JOBS) --workspace --bins

test-images: build
	cd test-images/wasm && CARGO_TARGET_DIR=$(WASM_TARGET_DIR) \
		$(CARGO) build --release -j $(JOBS) --workspace --exclude serve --target wasm32-wasip1
	cd test-images/wasm && CARGO_TARGET_DIR=$(WASM_TARGET_DIR) \
		$(CARGO) build --release -j $(JOBS) --target wasm32-wasip2 -p triage-workloads -p serve \
		$(addprefix --bin ,$(COMPONENT_WORKLOADS))
	$(RELEASE)/triage-image-builder \
		--wasm-dir $(WASM_DIR) --components-dir $(COMPONENTS_DIR) \
		--models test-images/models --busybox /bin/busybox --out $(IMAGES) \
		--native-hello $(RELEASE)/triage-native-hello

# The guest side of wasi:nn for the classifying service and of the snapshot init export of
# http-snap, generated from their WIT and committed
# (so that no build runs wit-bindgen's macros); needs `cargo install wit-bindgen-cli --version 0.57.1`.
wit-bindings:
	wit-bindgen rust --format --generate-all --world classify \
		--out-dir test-images/wasm/serve/src test-images/wasm/serve/wit
	mv test-images/wasm/serve/src/classify.rs test-images/wasm/serve/src/nn_bindings.rs
	wit-bindgen rust --format --world snapshot \
		--out-dir test-images/wasm/serve/src test-images/wasm/serve/wit-snapshot
	mv test-images/wasm/serve/src/snapshot.rs test-images/wasm/serve/src/snapshot_bindings.rs

demo: build test-images
	$(RELEASE)/triage-demo $(SHIM)

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release -j $(JOBS) --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release -j $(JOBS) -p triage-runtime --no-default-features --all-targets -- -D warnings

# All tests: lint, unit tests, and the end-to-end tests against a private containerd.
# TRIAGE_ONNXRUNTIME: the ONNX Runtime library (scripts/onnxruntime.sh fetches the pinned one);
# ORT_DISABLE_TELEMETRY: the tests that use it in-process send and keep nothing (the shim sets
# it for its helpers itself).
test: lint build test-images
	set -o pipefail; TRIAGE_IMAGES=$(CURDIR)/$(IMAGES) TRIAGE_WASM_DIR=$(WASM_DIR) \
		TRIAGE_COMPONENTS_DIR=$(COMPONENTS_DIR) \
		TRIAGE_ONNXRUNTIME=$$(bash scripts/onnxruntime.sh) ORT_DISABLE_TELEMETRY=1 \
		$(CARGO) test --release -j $(JOBS) --workspace -- --test-threads 2 2>&1 | tee $(CARGO_TARGET_DIR)/test.log
	set -o pipefail; $(MAKE) --no-print-directory test-wasmedge 2>&1 | tee -a $(CARGO_TARGET_DIR)/test.log
	@if [ "$$(id -u)" = 0 ]; then bash scripts/cgroup-leftovers.sh; fi
	@awk '/^test result:/ {p += $$4; f += $$6} END {printf "%d passed, %d failed\n", p, f}' $(CARGO_TARGET_DIR)/test.log

# The WasmEdge engine (runtime feature `wasmedge`) needs libwasmedge, which Debian 12 lacks: it is
# linted, unit-tested and run through the conformance suite inside a Debian 13 root that
# scripts/trixie.sh makes with debootstrap and keeps (the host's `cargo test` runs the same cases
# on wasmtime). A debug build of the runtime with WasmEdge alone keeps CI's cold build short; its
# own target dir, since what is built against trixie's glibc must not mix with the host's build.
TRIXIE_TARGET_DIR ?= $(CARGO_TARGET_DIR)-trixie
# Without debug info: a third less to compile and link on CI's 2 cores (backtraces keep names).
IN_TRIXIE := CARGO_TARGET_DIR=$(TRIXIE_TARGET_DIR) TRIXIE_BIND=$(WASM_DIR) \
	TRIXIE_ENV="TRIAGE_WASM_DIR=$(WASM_DIR) CARGO_PROFILE_DEV_DEBUG=0 $(if $(CARGO_INCREMENTAL),CARGO_INCREMENTAL=$(CARGO_INCREMENTAL))" \
	bash scripts/trixie.sh run
WASMEDGE_BUILD := --offline -j $(JOBS) -p triage-runtime --no-default-features --features wasmedge

test-wasmedge: test-images
	@if ! reason=$$(bash scripts/trixie.sh check); then \
		if [ "$${CI:-}" = true ]; then echo "CI must run the WasmEdge suite: $$reason"; exit 1; fi; \
		echo "SKIPPED: the WasmEdge suite: $$reason"; exit 0; \
	fi; \
	set -e; $(CARGO) fetch --locked; bash scripts/trixie.sh ensure; \
	$(IN_TRIXIE) cargo clippy $(WASMEDGE_BUILD) --all-targets -- -D warnings; \
	$(IN_TRIXIE) cargo test $(WASMEDGE_BUILD) --lib --test conformance --test wasmedge_plugin -- --test-threads 2

# Binaries (triage + wasmedge names) and runtime handlers; see install/README.md.
install: build
	$(RELEASE)/triage-install install --shim $(SHIM) --prefix $(PREFIX) --destdir "$(DESTDIR)"

uninstall: build
	$(RELEASE)/triage-install uninstall --prefix $(PREFIX) --destdir "$(DESTDIR)"

# In-process criterion benches, then whole starts through ctr (see README "Measurements").
bench: build test-images
	TRIAGE_WASM_DIR=$(WASM_DIR) \
		$(CARGO) bench -j $(JOBS) -p triage-benches
	bash benches/ctr-run.sh

# The in-process benches and ctr starts on wasmtime and WasmEdge, in the Debian 13 root
# (release builds with both engines: cold, about 25 minutes), medians side by side.
bench-wasmedge: test-images
	@reason=$$(bash scripts/trixie.sh check) || { echo "cannot bench WasmEdge here: $$reason"; exit 1; }
	$(CARGO) fetch --locked
	bash scripts/trixie.sh ensure
	TRIAGE_WASM_DIR=$(WASM_DIR) TRIXIE_TARGET_DIR=$(TRIXIE_TARGET_DIR) JOBS=$(JOBS) \
		HOST_RELEASE=$(RELEASE) bash benches/engines.sh

clean:
	rm -rf $(IMAGES)
	$(CARGO) clean
