# RLHF Lab. Two commands for a fresh machine: `make lab` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PY      = $(BIN)/python
STAMP   = $(VENV)/.installed

.PHONY: help install lab test test-units test-notebooks browser course bench data class-pairs rate clean-artifacts

help:
	@echo "make lab     create .venv, install, open JupyterLab on the notebooks"
	@echo "make test    install, run the unit tests and every notebook (quick mode)"
	@echo "make browser install Chromium (apt, needs root or sudo) so make test also runs the browser tests"
	@echo "make course  run every notebook in order, headless, full mode, outputs kept; print the report card"
	@echo "make bench   run the benchmarks; tables printed, CSV in bench/results/"
	@echo "make data    regenerate data/ from the seeded generator"
	@echo "make class-pairs  (instructor) write the pairs the class will rate, from the current policy"
	@echo "make rate    (instructor) serve the rating and chat page to the class; prints the class token"

# pip compiles every file it installs to bytecode, one file after another, most of them never
# imported by the course. The installs below skip that: Python compiles a module the first
# time it is imported and keeps the bytecode beside it. A machine that says not to keep it
# (PYTHONDONTWRITEBYTECODE, set in some containers) would compile torch and transformers
# again in every process, notebook kernel and worker, so make's commands run without it.
unexport PYTHONDONTWRITEBYTECODE

# The rest of the dependencies go in with uv, which downloads and installs them in parallel,
# the same versions in 0.17 to 0.23 of pip's time (bench/install_time.py: 7 to 11 s against
# 42 to 48 s here). uv keeps the torch installed just before it; where uv cannot be
# installed or cannot reach an index, pip does it all.
$(STAMP): pyproject.toml scripts/install_torch.py
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "RLHF Lab needs Python 3.10 or newer; found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check --quiet --upgrade pip
	$(PY) scripts/install_torch.py --no-compile
	( $(PY) -m pip install --disable-pip-version-check --no-compile --quiet uv && \
	  $(BIN)/uv pip install --quiet --python $(PY) -e ".[dev]" ) || \
	  $(PY) -m pip install --disable-pip-version-check --no-compile --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# JupyterLab refuses to run as root unless told; containers and some lab machines run as root.
ALLOW_ROOT = $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)

lab: install
	$(BIN)/jupyter lab notebooks/ $(ALLOW_ROOT)

# The browser tests drive Debian's Chromium with Playwright (never a browser download).
# Chromium alone, without the packages it only recommends (a desktop's printing, audio,
# avahi, udev and a newer perl and systemd): 19 packages instead of 107, 14 s instead of
# 24 s here, and the three browser tests pass the same.
CHROMIUM ?= /usr/bin/chromium
SUDO      = $(if $(filter 0,$(shell id -u 2>/dev/null)),,sudo)

# Nobody watches a headless run: RLHF_LAB_LIVE_PLOTS=0 draws each live training figure once,
# when its loop ends (rlhf_lab/plots.py), the picture a live run ends with; the JupyterLab
# browser test checks the redraws a learner sees.
# The unit tests and the notebooks run as two pytest processes side by side, each on half
# the cores (torch on more threads than cores slows both twentyfold). The unit tests end
# first; a file that exists while they run tells each notebook's kernel how many threads it
# may take (conftest.py), so the last notebooks get every core. Each process prints its
# report when it ends. `$(BIN)/pytest` alone runs both one after the other.
HALF_CORES    := $(shell $(PYTHON) -c 'import os; print(max(1, (os.cpu_count() or 2) // 2))')
UNITS_RUNNING := $(shell mktemp -u /tmp/rlhf_lab_units_running.XXXXXX)
PYTEST         = RLHF_LAB_QUICK=1 RLHF_LAB_CHROMIUM=$(CHROMIUM) OMP_NUM_THREADS=$(HALF_CORES) \
                 $(BIN)/pytest -q -rs --durations=15

test: install
	@test -x $(CHROMIUM) || echo "NOTE: the browser tests will be SKIPPED: no Chromium at $(CHROMIUM). 'make browser' installs it."
	$(BIN)/lint-imports --no-cache
	@echo "Running the unit tests and the notebooks side by side; each prints its report when it ends."
	@touch $(UNITS_RUNNING)
	@$(MAKE) --no-print-directory -j2 --output-sync=target UNITS_RUNNING=$(UNITS_RUNNING) test-units test-notebooks

test-units: install
	$(PYTEST) tests; status=$$?; rm -f $(UNITS_RUNNING); exit $$status

test-notebooks: install
	RLHF_LAB_LIVE_PLOTS=0 RLHF_LAB_UNITS_RUNNING=$(UNITS_RUNNING) $(PYTEST) notebooks

browser:
	@if test -x $(CHROMIUM); then echo "Chromium is installed: $(CHROMIUM)"; else \
	  echo "Installing Debian's chromium package with apt-get (needs root or sudo)"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; fi

course: install
	@for nb in notebooks/[0-9][0-9]_*.ipynb; do \
	  echo "== $$nb"; \
	  RLHF_LAB_QUICK=0 RLHF_LAB_LIVE_PLOTS=0 $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=1800 --ExecutePreprocessor.store_widget_state=True "$$nb" || exit 1; \
	  $(PY) scripts/finish_progress_bars.py "$$nb"; \
	done
	RLHF_LAB_QUICK=0 $(PY) -m rlhf_lab report

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

data: install
	$(PY) -m rlhf_lab.corpus

# The class server (rlhf_lab/class_server.py); override any of these on the command line.
# CHAT: chat models, comma-separated artifacts or model folders, or none (default: sft and the newest policy).
PAIRS     ?= data/class/pairs.jsonl
CLASS     ?= data/class/ratings
POLICY    ?=
N_PAIRS   ?= 40
RATE_HOST ?= 0.0.0.0
RATE_PORT ?= 8866
CHAT      ?=

class-pairs: install
	$(PY) -m rlhf_lab.class_server make-pairs --out $(PAIRS) $(if $(POLICY),--policy $(POLICY),) --n $(N_PAIRS) $(if $(FORCE),--force,)

rate: install
	$(PY) -m rlhf_lab.class_server serve --pairs $(PAIRS) --folder $(CLASS) --host $(RATE_HOST) --port $(RATE_PORT) $(if $(CHAT),--chat $(CHAT),)

clean-artifacts:
	rm -rf artifacts
