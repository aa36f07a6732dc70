# One entry point for developers and CI.
PY ?= python3
PIP ?= $(PY) -m pip

.PHONY: dev test lint bench fmt

# Build and install the package (release build) with the test extras.
dev:
	$(PIP) install --quiet --disable-pip-version-check '.[test]'

# The whole suite: Rust unit tests, then the Python tests against the installed package.
test: dev
	cargo test --quiet -p cnnrs-core
	$(PY) -m pytest -q

lint: dev
	cargo fmt --all --check
	cargo clippy --all-targets -- -D warnings
	ruff check python tests benches
	cd /tmp && $(PY) -m mypy.stubtest cnnrs._native

fmt:
	cargo fmt --all
	ruff check --fix python tests benches

bench: dev
	$(PY) benches/bench.py --suite all
