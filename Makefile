# gatelane: every target sets itself up (venv, pinned packages, Debian packages) on a fresh machine.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: all demo test check lint types bench sysdeps clean

all: test

sysdeps:
	@tools/setup-system.sh

$(STAMP): pyproject.toml constraints.txt | sysdeps
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "Installing pinned Python packages into $(VENV)"
	@$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@# The plate models only: hyperlpr2's own dependency (opencv-python) would replace ours.
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt hyperlpr2
	@touch $(STAMP)

demo: sysdeps $(STAMP)
	$(VENV)/bin/lane-sim run --scenario demo --report .demo/report.json

lint: $(STAMP)
	$(VENV)/bin/ruff check .

types: $(STAMP)
	$(VENV)/bin/mypy
	@$(PY) tools/check_firmware_types.py

# The edit-test loop: lint, types and every test that needs no broker and starts no other
# program (the markers are set in conftest.py); well under a minute. `make test` runs all.
check: $(STAMP) lint types
	$(PY) -m pytest -m "not broker and not process" -n 2

test: sysdeps $(STAMP) lint types
	$(PY) -m pytest

bench: sysdeps $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .bench .demo .mypy_cache .ruff_cache

# The Debian package for a lane: dist/gatelane_VERSION_ARCH.deb, with every runtime wheel in
# it. ARCH=arm64 builds the Raspberry Pi's on any machine; the default is this machine's.
ARCH ?= $(shell dpkg --print-architecture)
.PHONY: deb
deb: $(STAMP)
	PYTHON=$(PY) deb/build-deb.sh --arch $(ARCH) --out dist
