# Thin wrappers around ops/dev.py, which needs nothing but Python 3.11+.
PYTHON ?= python3

.PHONY: demo test lint serve bench
demo:
	$(PYTHON) ops/dev.py demo
test:
	$(PYTHON) ops/dev.py test
lint:
	$(PYTHON) ops/dev.py lint
serve:
	$(PYTHON) ops/dev.py serve
bench:
	$(PYTHON) ops/dev.py bench
