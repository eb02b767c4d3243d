# Two commands do everything on a fresh machine (Python 3.10+ and Java on PATH):
#   make study   the whole study on the embedded default, ending in reports/tiny/index.html
#   make test    the linter (ruff, configured in pyproject.toml) and the test suite
# (make smoke: the wiring check in under a minute, ending in reports/smoke/index.html;
#  make dial: the consistency dial, ending in reports/dial/index.html)
# Both create (or reuse) the virtual environment .venv by themselves.
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch; on a GPU node use e.g. `make TORCH_SPEC=torch study`.
TORCH_SPEC ?= torch==2.13.0
PRESET ?= tiny
WORKERS ?= 2
BIN := $(VENV)/bin

.PHONY: setup smoke study dial test lab benchmarks clean-runs

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,slurm]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

setup: $(BIN)/.installed

smoke: setup
	$(BIN)/vlpeft study --preset smoke --workers $(WORKERS)

study: setup
	$(BIN)/vlpeft study --preset $(PRESET) --workers $(WORKERS)
	if [ "$(PRESET)" = tiny ] && [ -f reports/tiny-blip/runs.csv ]; then \
		$(BIN)/vlpeft compare reports/tiny reports/tiny-blip --out reports/families; fi

dial: setup
	$(BIN)/vlpeft study --preset dial --workers $(WORKERS)

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n 2 --dist loadfile tests
	$(BIN)/pytest -q -n 2 --dist loadfile --nbval-lax notebooks

lab: setup
	$(BIN)/jupyter lab notebooks

benchmarks: setup
	$(BIN)/python benchmarks/pretrain_time.py
	$(BIN)/python benchmarks/pipeline.py

clean-runs:
	rm -rf runs/smoke runs/tiny runs/dial
