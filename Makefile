# `make run` and `make test` work on a fresh clone: they make the virtual environment, install the
# pinned requirements (again only when requirements.txt changes), migrate, then do their job.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: run test lint bench migrate demo messages

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

# ruff (lint and format), mypy over the product, and the import contracts of pyproject.toml
# (the layers of docs/ARCHITECTURE.md).
lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest

bench: $(INSTALLED)
	$(PY) -m bench

# Re-extract the texts relatives read into locales/messages.pot and merge them into the Bengali
# and Hindi catalogues (a new language's catalogue is created); then translate the empty msgstr.
TRANSLATIONS := bn hi
messages: $(INSTALLED)
	$(VENV)/bin/pybabel extract -F babel.cfg --no-location --sort-output -k ngettext:1,2 \
		--project "Ward Watch" -o locales/messages.pot .
	for lang in $(TRANSLATIONS); do \
		if [ -f locales/$$lang/LC_MESSAGES/messages.po ]; then \
			$(VENV)/bin/pybabel update -i locales/messages.pot -d locales -l $$lang -w 100 \
				--no-fuzzy-matching --ignore-obsolete || exit 1; \
		else \
			$(VENV)/bin/pybabel init -i locales/messages.pot -d locales -l $$lang || exit 1; \
		fi; \
	done
