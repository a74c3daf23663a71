# InsPro Edge. Quick start: `make demo` and `make test` (each installs what it needs).
SHELL := /bin/bash
CARGO ?= cargo
VENV ?= $(CURDIR)/.venv
# The ONNX Runtime library of the onnxruntime wheel that scripts/setup.sh installs.
export ORT_DYLIB_PATH ?= $(firstword $(wildcard $(VENV)/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*))

.PHONY: setup build plugin test lint fmt demo bench info clean-out

setup:
	scripts/setup.sh

build: setup
	$(CARGO) build --release

# The GStreamer plugin: target/release/libgstinspro.so (GST_PLUGIN_PATH=$(CURDIR)/target/release).
plugin: setup
	$(CARGO) build --release -p gst-inspro

# Every test, plus the formatting and lint gates CI enforces.
test: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --features edge -- -D warnings
	$(CARGO) test --workspace
	$(CARGO) test --features edge --lib edge::
	$(CARGO) build --features edge --example rtsp_server
	$(CARGO) test --features edge --test edge_rtsp --test edge_control --test edge_http --test edge_store --test edge_page
	$(CARGO) test --features edge --test edge_service --test edge_mqtt --test edge_unit --test edge_soak --test edge_geometry --test edge_rules --test edge_snapshots --test edge_cameras --test edge_tracking
	$(CARGO) test --features edge --test edge_faults --test edge_tls --test fuzz_parsers -- --nocapture

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --features edge -- -D warnings

fmt:
	$(CARGO) fmt --all

# demo.sh builds with the daemon (--features edge) itself.
demo: setup
	scripts/demo.sh

# Benchmarks write their numbers to stdout and out/bench.jsonl; docs/perf.md records them with
# machine, date and load. The daemon-overhead part needs the daemon (--features edge).
bench: setup
	$(CARGO) build --release --features edge
	scripts/bench.sh

info: build
	./target/release/inspro info --model configs/models/inspro-r50.toml

clean-out:
	rm -rf out
