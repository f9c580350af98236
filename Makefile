# Set-up and everyday commands. `make quickstart` installs and runs the default job;
# `make test` runs the tests (CI runs exactly this, see .ci/run).
VENV   ?= .venv
PY     := $(VENV)/bin/python
SHARED ?= ../shared/data
SOURCE ?= data/celeba

.PHONY: install quickstart test data-link clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# The default source is data/celeba. On a machine with the shared sample, link it there;
# otherwise put CelebA (either layout) or any folder of face photos at data/celeba.
data-link:
	@mkdir -p data
	@if [ -e $(SOURCE) ]; then :; \
	elif [ -d $(SHARED)/celeba-sample ]; then ln -sfn "$$(cd $(SHARED)/celeba-sample && pwd)" $(SOURCE); \
	else echo "no face source: put CelebA or a folder of face photos at $(SOURCE)"; exit 1; fi

quickstart: install data-link
	$(VENV)/bin/maskgen build --source $(SOURCE) --out data/shards --res 256 --seed 0
	$(VENV)/bin/maskgen preview data/shards -n 16 -o data/preview.png

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
