# `make run` and `make test` work on a fresh clone: they make the virtual environment, install the
# pinned requirements (again only when requirements.txt changes), migrate, then do their job.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: run test bench migrate demo

$(INSTALLED): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(INSTALLED)

migrate: $(INSTALLED)
	$(PY) -m bot db upgrade

run: migrate
	$(PY) -m bot run

demo: migrate
	$(PY) -m bot demo

test: $(INSTALLED)
	$(PY) -m pytest

bench: $(INSTALLED)
	$(PY) -m bench
