# The two commands of the README:
#   make main   set up a virtual environment and run the whole path on the default model
#   make test   set up a virtual environment and run the test suite
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
RUN     ?= runs/main
MODEL   ?= efficientnet_lite0
# Offline on the development machines: use ../shared when it is there (a user's machine downloads instead).
SHARED   = $(abspath ../shared)
export EDGEFLOWER_DATA ?= $(if $(wildcard $(SHARED)/data/flower_photos),$(SHARED)/data/flower_photos,)
export EDGEFLOWER_OUTLIERS ?= $(if $(wildcard $(SHARED)/data/outliers/MANIFEST.tsv),$(SHARED)/data/outliers,)
export KERAS_HOME      ?= $(if $(wildcard $(SHARED)/keras/models),$(SHARED)/keras,$(HOME)/.keras)
# TensorFlow's C++ log: 3 hides INFO, WARNING and ERROR lines ("failed call to cuInit" is one), the level the CLI
# itself sets without -v when the variable is unset (edgeflower/util/quiet.py)
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: main test lint setup bench-study pi-check mutants api-docs clean

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools>=77" wheel
	$(BIN)/pip install -q -e ".[all,dev]"
	touch $@

setup: $(VENV)/.installed

main: setup
	$(BIN)/edgeflower train --model $(MODEL) --augment --label-smoothing 0.1 --epochs 40 --out $(RUN)/train --force
	$(BIN)/edgeflower export $(RUN)/train --int8
	$(BIN)/edgeflower bench $(RUN)/train/export/model_float.tflite $(RUN)/train/export/model_int8.tflite \
		$(RUN)/train/export/model.onnx $(RUN)/train/export/model_int8.onnx --threads 1,2 \
		--json $(RUN)/bench.json

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

# ruff (pyproject.toml [tool.ruff]: pyflakes, pycodestyle, import order), then the import contracts
# (pyproject.toml [tool.importlinter]):
# layering, no TensorFlow on the device side, a light CLI
lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# break the code in each place a test must guard, one at a time (scripts/mutants.py; about 10 minutes)
mutants: setup
	$(BIN)/python scripts/mutants.py

# the API reference from the docstrings (pdoc) into build/api; fails on a reference that names nothing
api-docs: setup
	$(BIN)/python scripts/api_docs.py

bench-study: setup
	$(BIN)/python -m benchmarks.study

pi-check: setup
	bash scripts/pi-emulated-check.sh

clean:
	rm -rf $(VENV) runs build *.egg-info
