# Two entry points: `make serve` and `make test`. Both set up .venv on first use only.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SYSTEM_TOOLS := opusenc opusdec c2enc c2dec ffmpeg sox espeak-ng festival docker-compose
DATA_TEST := ../shared/data/test/libritts_test_clean

.PHONY: setup system-deps test lint serve eval bench bench-server device-bundle model-f0 clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

# Debian tools used by evaluation baselines and synthetic data; installed only when missing.
system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing=1; done; \
	if [ -n "$$missing" ]; then \
		echo "installing codec2 opus-tools ffmpeg sox espeak-ng festival docker-compose"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			codec2 opus-tools ffmpeg sox espeak-ng festival docker-compose >/dev/null; \
	fi

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup system-deps lint
	$(BIN)/pytest -q

serve: setup
	$(BIN)/wavtok serve

eval: setup system-deps
	$(BIN)/wavtok eval --data $(DATA_TEST) --baselines opus_6k,opus_12k,codec2_3200,codec2_1200 --out reports/eval

bench: setup
	$(BIN)/python benchmarks/speed.py

# Start `make serve` (or `wavtok serve`) in another shell first.
bench-server: setup
	$(BIN)/python benchmarks/server_load.py

# Wheels and data for a training run on a lent GPU (docs/training.md); needs data/train-real.
device-bundle: setup system-deps
	bash scripts/device_bundle.sh

# The opt-in model's weights, kept out of the working tree (scripts/restore_f0_model.sh).
model-f0: setup
	bash scripts/restore_f0_model.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
