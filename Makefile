PY ?= python3
PIP = $(PY) -m pip
# torch is pinned through constraints.txt so a fresh machine gets the local CPU build.
INSTALL = $(PIP) install -q -c constraints.txt torch==2.13.0 && $(PIP) install -q -c constraints.txt -e

.PHONY: demo test test-fast test-course install install-test bench

install:
	$(INSTALL) .

install-test:
	$(INSTALL) ".[test,bm3d]"

demo: install
	$(PY) -m denoise demo --out demo_out

test: install-test
	$(PY) -m pytest -q -m "not course"

test-course: install-test
	$(PY) -m pytest -q -m course

test-fast: install-test
	$(PY) -m pytest -q -m "not slow"
