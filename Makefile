# gatelane: every target sets itself up (venv, pinned packages, Debian packages) on a fresh machine.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: all demo test check lint types fw-check unit bench sysdeps clean

all: test

sysdeps:
	@tools/setup-system.sh

$(STAMP): pyproject.toml constraints.txt | sysdeps
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "Installing pinned Python packages into $(VENV)"
	@$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: sysdeps $(STAMP)
	$(VENV)/bin/lane-sim run --scenario demo --report .demo/report.json

lint: $(STAMP)
	$(VENV)/bin/ruff check .

types: $(STAMP)
	$(VENV)/bin/mypy
	@$(PY) tools/check_firmware_types.py

# The edit-test loop: lint and the pure cores (codecs, weighing, lane machine, passes, config,
# stores, firmware core), no broker or subprocess; well under a minute.
CHECK_TESTS := edge_agent/tests/test_indicator_codecs.py edge_agent/tests/test_weigh_*.py \
	edge_agent/tests/test_lane_*.py edge_agent/tests/test_gp1*.py edge_agent/tests/test_config.py \
	edge_agent/tests/test_remote_config.py edge_agent/tests/test_outbox.py \
	edge_agent/tests/test_ledger.py edge_agent/tests/test_telemetry_commands.py \
	edge_agent/tests/test_telemetry_command_state.py edge_agent/tests/test_telemetry_envelope.py \
	edge_agent/tests/test_iolink.py firmware/tests/test_fw_core.py \
	redteam/test_indicators.py redteam/test_passes.py

check: $(STAMP) lint
	$(PY) -m pytest -m "not slow" $(CHECK_TESTS)

unit: sysdeps $(STAMP)
	$(PY) -m pytest

test: sysdeps $(STAMP) lint types
	$(PY) -m pytest

bench: sysdeps $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .bench .demo .mypy_cache .ruff_cache
