# Everything installs into a project virtual environment (.venv), so the two commands work on
# a Python that refuses global installs (PEP 668) and leave the system's Python untouched.
# PY picks the interpreter that creates it (default python3).
PY ?= python3
VENV = .venv
VPY = $(VENV)/bin/python
PIP = $(VPY) -m pip
# torch is pinned through constraints.txt so a fresh machine gets the local CPU build.
INSTALL = $(PIP) install -q -c constraints.txt torch==2.13.0 && $(PIP) install -q -c constraints.txt -e

.PHONY: demo test test-fast test-course install install-test venv clean-venv

$(VPY):
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

venv: $(VPY)

install: $(VPY)
	$(INSTALL) .

install-test: $(VPY)
	$(INSTALL) ".[test,bm3d,web,web-test,onnx]"

demo: install
	$(VPY) -m denoise demo --out demo_out

test: install-test
	$(VPY) -m pytest -q -m "not course"

test-course: install-test
	$(VPY) -m pytest -q -m course

test-fast: install-test
	$(VPY) -m pytest -q -m "not slow"

clean-venv:
	rm -rf $(VENV)
