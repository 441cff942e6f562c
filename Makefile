# The book's commands. Each target sets up its own virtualenv (.venv, Python 3.11) first.
#   make book    build the website from the committed notebooks into _build/html
#   make test    unit tests + notebook regression + site build check
# See README.md for the rest (chapter runs, regression copies, scoreboard, screenshots).

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CH      ?= 00
PROFILE ?= cpu

# CI and local runs read the offline datasets beside the checkout when they are there.
ifneq ($(wildcard ../shared/datasets),)
export BOOK_DATA_DIR ?= $(abspath ../shared/datasets)
endif

# Import this checkout's helpers even when .venv is shared with another worktree.
export PYTHONPATH := $(CURDIR)/src$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: install book test chapter regress scoreboard screenshots lock clean
.PHONY: install-cpu cpu-constraints test-archives dryrun

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test,book]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# A CPU-only machine (CI): torch and torchvision from PyTorch's CPU index at the versions pinned in
# constraints.txt, then everything else with the pins minus the CUDA wheels a CPU never loads.
CPU_INDEX       ?= https://download.pytorch.org/whl/cpu
CPU_CONSTRAINTS ?= _build/constraints-cpu.txt
TORCH_PINS      := $(shell grep -E '^(torch|torchvision)==' constraints.txt)

cpu-constraints:
	mkdir -p $(dir $(CPU_CONSTRAINTS))
	grep -viE '^(nvidia-|cuda-|triton==)' constraints.txt > $(CPU_CONSTRAINTS)

install-cpu: cpu-constraints
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --index-url $(CPU_INDEX) $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(CPU_CONSTRAINTS) -e ".[test,book]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# The whole suite with BOOK_DATA_DIR unset, downloading the book-sized archives from a local
# server (tests/serve_archives.py packs ../shared/datasets or $$BOOK_DATA_DIR); reports the bytes.
test-archives: install
	$(BIN)/python tests/serve_archives.py -- $(MAKE) test BOOK_DATA_DIR=

book: install
	$(BIN)/jupyter-book build . --toc book/_toc.yml --builder html -W -n --keep-going

# No progress bars or GUI backend while nbval compares outputs (.ci/run sets the same).
test: install
	TQDM_DISABLE=1 MPLBACKEND=Agg $(BIN)/python -m pytest

chapter: install
	$(BIN)/python -m helpers run $(CH) --profile $(PROFILE)

# Every chapter's dry run, one after another (the suite runs those of 01-03: tests/test_dryrun.py).
dryrun: install
	for ch in 01 02 03 04 05; do TQDM_DISABLE=1 $(BIN)/python -m helpers dryrun $$ch || exit 1; done

regress: install
	$(BIN)/python -m helpers refresh $(CH)

scoreboard: install
	$(BIN)/python -m helpers scoreboard

screenshots: book
	$(BIN)/python -m helpers screenshots

# Re-resolve every dependency from pyproject.toml's ranges and pin the result in constraints.txt.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1 -e ".[test,book,gpu]"
	( echo "# Exact versions for the README commands and CI (make lock regenerates this file)."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v "^compressed-images-book==" | sort -f ) > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf _build $(VENV)
