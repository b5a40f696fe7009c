# cryofield: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO   := demo_output

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	bash scripts/demo.sh $(DEMO)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports

test: install lint
	# pytest's exit code 5 means no tests were collected: not a failure
	$(VENV)/bin/pytest -q; status=$$?; [ $$status -eq 0 ] || [ $$status -eq 5 ]

bench: install
	$(PY) benchmarks/bench_io.py
	$(PY) benchmarks/bench_recon.py

clean:
	rm -rf $(DEMO) .pytest_cache build src/*.egg-info
