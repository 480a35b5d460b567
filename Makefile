# fastproxy: `make run` and `make test` do all the set-up on a fresh machine (Python 3.11, gcc, pip).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-installed
# mitmproxy pins old h2/cryptography, so it gets its own virtualenv: the tests use it to
# check that mitmproxy reads our recordings and we read its.
MITM_VENV ?= .venv-mitmproxy
MITM_STAMP := $(MITM_VENV)/.installed
ARGS ?=
PORT ?= 8080

.PHONY: run test build debug bench lint clean fuzz

$(STAMP): requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-build-isolation -e .
	touch $@

$(MITM_STAMP):
	$(PYTHON) -m venv $(MITM_VENV)
	$(MITM_VENV)/bin/python -m pip install -q mitmproxy==11.0.2
	touch $@

# Cythonize and compile the extensions (setup.py) in place; a no-op when nothing changed.
build: $(STAMP)
	$(PY) setup.py -q build_ext --inplace

run: build
	$(VENV)/bin/fastproxy run --listen-host 127.0.0.1 -p $(PORT) $(ARGS)

test: build $(MITM_STAMP)
	FASTPROXY_MITMPROXY_PYTHON=$(abspath $(MITM_VENV))/bin/python \
		$(PY) -m pytest -q -p no:cacheprovider $(ARGS)

# Cython annotation (an .html beside each .pyx) and a linetrace build for profilers.
debug: $(STAMP)
	$(VENV)/bin/cython -a -3 fastproxy/_core.pyx fastproxy/io/_encode.pyx fastproxy/io/_handover.pyx \
		fastproxy/io/_ring.pyx
	FASTPROXY_LINETRACE=1 $(PY) setup.py -q build_ext --inplace --force

bench: build
	$(PY) bench/run.py $(ARGS)

lint: $(STAMP)
	$(PY) -m pip install -q ruff
	$(VENV)/bin/ruff check fastproxy tests bench

# Fuzz HTTP1Reader: the atheris target (fuzz/fuzz_h1_reader.py, the property of
# tests/test_h1_differential.py) for FUZZ_SECONDS, then the reader under valgrind memcheck over
# the seed corpus (llhttp's vectors from ../shared when present, and hostile heads).
# Uninitialised-value errors are off: CPython 3.11's int.from_bytes leaves a digit unset and
# taints its small-int cache, and every byte the reader reads comes from a bytes object;
# invalid reads and writes, bad frees and overlaps fail the run.
FUZZ_SECONDS ?= 300
FUZZ_DIR ?= build/fuzz
fuzz: build
	$(PY) -m pip install -q atheris
	mkdir -p $(FUZZ_DIR)/corpus
	$(PY) fuzz/fuzz_h1_reader.py --write-seeds $(FUZZ_DIR)/corpus
	cd $(FUZZ_DIR) && $(abspath $(PY)) $(abspath fuzz/fuzz_h1_reader.py) \
		-max_total_time=$(FUZZ_SECONDS) -timeout=20 -rss_limit_mb=4096 corpus
	command -v valgrind >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q && \
		apt-get install -y -q valgrind; }
	PYTHONMALLOC=malloc valgrind --tool=memcheck --error-exitcode=1 --quiet \
		--undef-value-errors=no $(PY) fuzz/fuzz_h1_reader.py --replay

clean:
	rm -rf build *.egg-info fastproxy/*.so fastproxy/_core.c fastproxy/_core.html \
		fastproxy/io/*.so fastproxy/io/_*.c fastproxy/io/_*.html .pytest_cache
