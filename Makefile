# koala: the two commands are `make course` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.koala-installed

# The portrait folder beside the checkout (in CI too); KOALA_DATA_DIR=... overrides it.
SHARED_PORTRAITS := $(abspath ../shared/data/portraits)
KOALA_DATA_DIR ?= $(if $(wildcard $(SHARED_PORTRAITS)/manifest.csv),$(SHARED_PORTRAITS),)
export KOALA_DATA_DIR

NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
# nbval compares the committed outputs of cells marked NBVAL_CHECK_OUTPUT (outputs no profile
# changes), so it runs the notebooks that have such cells, and the exercise solutions;
# tests/test_notebooks.py runs every notebook and checks the numbers it records.
NBVAL_NOTEBOOKS := $(shell grep -l '"# NBVAL_CHECK_OUTPUT' $(NOTEBOOKS)) notebooks/solutions
# Test runs write only under build/: figures, results, executed notebooks.
CI_ENV := KOALA_PROFILE=ci KOALA_FIG_DIR=$(CURDIR)/build/figures KOALA_BUILD_DIR=$(CURDIR)/build \
    KOALA_CACHE_DIR=$(CURDIR)/build/cache
# TensorFlow's two CPU kernel families, whatever this CPU's default (CONTRIBUTING.md, "Floats a
# framework computed"): oneDNN for the tests, Eigen for nbval; `make test-kernels` swaps them.
ONEDNN_TESTS ?= 1
ONEDNN_NOTEBOOKS ?= 0
# Model code must stay backend-agnostic: these tests run again under JAX.
BACKEND_TESTS := tests/test_model.py tests/test_features.py tests/test_data_cache.py \
    tests/test_losses.py \
    tests/test_train.py::test_ci_profile_lowers_the_held_out_loss \
    tests/test_train.py::test_classification_head_trains_in_the_ci_profile_and_lowers_its_loss \
    tests/test_train.py::test_interrupted_run_resumes_to_the_same_end \
    tests/test_train.py::test_a_resident_set_trains_the_same_run_as_the_host_path \
    tests/test_train.py::test_the_stored_bytes_trainer_has_the_float_batches_loss

# make test's second lane: these tests, from these files (the main lane runs all others).
BESIDE_FILES := tests/test_notebooks.py tests/test_install.py tests/test_browser.py \
    tests/test_precision.py
BESIDE_TESTS := gpu_check or installing or ab_slider or data_parallel

.PHONY: help env test test-kernels course lab notebooks gpu-check-pack gpu-check clean

help:
	@echo "make course        set up .venv, run every notebook (profile auto) -> build/notebooks, figures/"
	@echo "make test          set up .venv, ruff + pytest (oneDNN) + nbval (Eigen) + papermill"
	@echo "                   (profile ci), model tests on JAX"
	@echo "make test-kernels  make test with TensorFlow's CPU kernels swapped (oneDNN, Eigen)"
	@echo "make lab           JupyterLab on notebooks/"
	@echo "make notebooks     make course, then its outputs into notebooks/ (the committed outputs)"
	@echo "make gpu-check-pack  beside the portraits: the one archive a device call carries"
	@echo "make gpu-check     on a GPU machine: notebooks 06-10 (the gpu profile's switches) +"
	@echo "                   the training benchmark, JSON (CONTRIBUTING.md, docs/results.md)"

# The environment: created once, reinstalled when pyproject.toml changes.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "koala needs Python >= 3.11: make PYTHON=python3.11 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

env: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	@mkdir -p build
# tests/test_browser.py drives Debian's Chromium: installed here when missing (as root or with
# sudo); where that cannot be done, the test skips and says why.
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	    if [ "$$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	    else echo "make test: no chromium/chromedriver, and no root or sudo to install them:" \
	        "the browser test will skip."; exit 0; fi; \
	    echo "make test: installing chromium and chromium-driver (apt) for tests/test_browser.py"; \
	    $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive \
	        apt-get install -y -qq chromium chromium-driver >/dev/null \
	    || echo "make test: apt-get install chromium chromium-driver failed: the browser test will skip."; }
# Two lanes, one a core, since each run keeps about one core busy: the main tests then nbval
# here; beside them the slowest tests that run processes of their own (the GPU check's dry
# run, notebooks 06-10; the Colab-versions install; JupyterLab in Chromium; two JAX devices),
# then the model tests on JAX (their output follows). Every run reports; make stops if any
# failed. BESIDE_TESTS picks them out of the files they live in.
	status=0; \
	{ TF_ENABLE_ONEDNN_OPTS=$(ONEDNN_TESTS) $(CI_ENV) $(BIN)/python -m pytest \
	      $(BESIDE_FILES) -k "$(BESIDE_TESTS)" -p no:cacheprovider --durations=5 \
	      > build/gpu-check-tests.log 2>&1; gpu=$$?; \
	  $(CI_ENV) KERAS_BACKEND=jax $(BIN)/python -m pytest $(BACKEND_TESTS) -p no:cacheprovider \
	      --durations=10 > build/jax-tests.log 2>&1 && exit $$gpu; } & beside=$$!; \
	TF_ENABLE_ONEDNN_OPTS=$(ONEDNN_TESTS) $(CI_ENV) $(BIN)/python -m pytest tests \
	    -k "not ($(BESIDE_TESTS))" -p no:cacheprovider --durations=25 || status=1; \
	TF_ENABLE_ONEDNN_OPTS=$(ONEDNN_NOTEBOOKS) $(CI_ENV) $(BIN)/python -m pytest \
	    $(NBVAL_NOTEBOOKS) --nbval-lax --sanitize-with tests/nbval_sanitize.cfg \
	    -p no:cacheprovider --durations=10 || status=1; \
	wait $$beside || status=1; \
	echo "== beside: the GPU check's dry run, the install, the browser (build/gpu-check-tests.log)"; \
	cat build/gpu-check-tests.log; \
	echo "== the model tests again, on JAX (build/jax-tests.log)"; cat build/jax-tests.log; \
	exit $$status

test-kernels:
	$(MAKE) test ONEDNN_TESTS=$(ONEDNN_NOTEBOOKS) ONEDNN_NOTEBOOKS=$(ONEDNN_TESTS)

course: $(STAMP)
	@mkdir -p build/notebooks
	@[ -n "$$KOALA_DATA_DIR" ] || echo "KOALA_DATA_DIR is not set: notebooks use their built-in sample images."
	@set -e; for nb in $(NOTEBOOKS); do \
	    echo "== $$nb"; start=$$(date +%s); \
	    $(BIN)/papermill "$$nb" "build/notebooks/$$(basename $$nb)" --cwd notebooks; \
	    echo "== $$nb took $$(( $$(date +%s) - start )) s"; \
	done
	@echo "Executed notebooks: build/notebooks/   figures: figures/"

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

# The committed notebooks carry the outputs of a real `make course` run (the cpu profile on
# the shared portraits, or gpu on a GPU machine); CI executes the ci profile and nbval
# compares only the cells marked NBVAL_CHECK_OUTPUT, whose output no profile changes.
notebooks: course
	$(BIN)/python scripts/commit_outputs.py build/notebooks notebooks

# The GPU check (benchmarks/gpu_check.py): `make gpu-check-pack` here writes the portraits as
# one archive under 55 MiB (build/gpu-check-data/, carried to the device); `make gpu-check`
# runs there with that machine's Python (Keras 3, JAX, papermill): no .venv needed.
GPU_PYTHON ?= python3
gpu-check-pack: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py --pack

gpu-check:
	KERAS_BACKEND=jax PYTHONPATH=$(CURDIR):$(CURDIR)/tests$${PYTHONPATH:+:$$PYTHONPATH} \
	    $(GPU_PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf build
