# Two commands do everything on a fresh machine (Python 3.10+ and Java on PATH):
#   make study   the whole study on the embedded default, ending in reports/tiny/index.html
#   make test    the linter (ruff, configured in pyproject.toml) and the test suite
# (make smoke: the wiring check in under a minute, ending in reports/smoke/index.html;
#  make dial: the consistency dial, ending in reports/dial/index.html)
# Both create (or reuse) the virtual environment .venv by themselves.
PYTHON ?= python3
VENV ?= .venv
# Every package at the version and hash of requirements.lock (torch: its CPU build). On a GPU node, a CUDA build
# of torch in its place, e.g. `make TORCH_SPEC=torch==2.13.0 study` (provenance records what was installed).
TORCH_SPEC ?=
PRESET ?= tiny
WORKERS ?= 2
BIN := $(VENV)/bin

.PHONY: setup smoke study dial test lab benchmarks clean-runs lock

$(BIN)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/python -m pip install -q "$(TORCH_SPEC)"; fi
	$(BIN)/python -m pip check
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# Refresh the lock after a change of pyproject.toml's dependencies (then commit requirements.lock and environment.yml)
lock: setup
	$(BIN)/python -m pip install -q pip-tools
	$(BIN)/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --extra dev --extra slurm \
		--no-emit-index-url --no-emit-find-links --no-emit-trusted-host -o requirements.lock pyproject.toml tools/lock.in
	$(BIN)/python tools/lock.py

setup: $(BIN)/.installed

smoke: setup
	$(BIN)/vlpeft study --preset smoke --workers $(WORKERS)

study: setup
	$(BIN)/vlpeft study --preset $(PRESET) --workers $(WORKERS)
	if [ "$(PRESET)" = tiny ] && [ -f reports/tiny-blip/runs.csv ]; then \
		if $(BIN)/python -c "import sys; from vlpeft.study.presets import same_design; \
			sys.exit(not same_design('reports/tiny', 'reports/tiny-blip'))"; then \
			$(BIN)/vlpeft compare reports/tiny reports/tiny-blip --out reports/families; \
		else echo "reports/families not re-made: reports/tiny-blip is of another design (its draws, seeds or" \
			"pre-training length); run \`vlpeft study --preset tiny-blip\`, then \`make study\` again"; fi; fi

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
