# cryofield: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO   := demo_output

.PHONY: install demo test lint browser bench faults clean

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

test: install lint browser
	# pytest's exit code 5 means no tests were collected: not a failure
	$(VENV)/bin/pytest -q; status=$$?; [ $$status -eq 0 ] || [ $$status -eq 5 ]

# the long fault matrix: 3 SIGKILLs x 3 moments x resume for every trainer, 50000 mutated input files (~10 min)
faults: install
	log=$$(mktemp); CRYOFIELD_FUZZ=50000 CRYOFIELD_KILLS=3 $(VENV)/bin/pytest -q -s -m "faults or not faults" \
	  tests/train/test_kill.py tests/io/test_fuzz.py > $$log 2>&1; status=$$?; \
	  grep -E "(^fuzz:|^MATRIX|passed|failed|^E )" $$log; rm -f $$log; exit $$status

# the report's headless-browser test needs Chromium: Debian's package, installed once where we may
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; } || \
	  echo "note: no chromium (and no root apt-get to install it): the report's browser test will skip"

bench: install
	$(PY) benchmarks/bench_io.py
	$(PY) benchmarks/bench_recon.py

clean:
	rm -rf $(DEMO) .pytest_cache build src/*.egg-info
