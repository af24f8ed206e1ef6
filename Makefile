# fraudstream — the two commands that matter: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
KAFKA_PORT ?= 9092
REDIS_PORT ?= 6379
PARTITIONS ?= 6
export KAFKA_PORT REDIS_PORT

.PHONY: setup up down topics test test-unit lint smoke demo bench bench-quick clean

setup: $(VENV)/.installed ops/kafka/lib/.stamp redis-check

$(VENV)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python 3.11+ is required (found %s)" % sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

ops/kafka/lib/.stamp: ops/kafka/pom.xml
	ops/kafka/kafka.sh resolve

.PHONY: redis-check
redis-check:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server with apt-get..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "error: redis-server is missing: install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)" >&2; exit 2; \
	  fi; }

up: setup
	ops/redis/redis.sh start
	ops/kafka/kafka.sh start

down:
	ops/kafka/kafka.sh stop
	ops/redis/redis.sh stop

topics: up
	$(PY) ops/topics.py --bootstrap 127.0.0.1:$(KAFKA_PORT) --partitions $(PARTITIONS)

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test-unit: setup
	$(VENV)/bin/pytest tests/unit -q

test: setup lint
	$(VENV)/bin/pytest -q

smoke: topics
	$(PY) ops/smoke.py --bootstrap 127.0.0.1:$(KAFKA_PORT) --redis-url redis://127.0.0.1:$(REDIS_PORT)/0

demo: smoke
	$(PY) ops/demo.py --bootstrap 127.0.0.1:$(KAFKA_PORT) --redis-url redis://127.0.0.1:$(REDIS_PORT)/0 $(DEMO_ARGS)

bench: topics
	$(PY) ops/bench/run.py --bootstrap 127.0.0.1:$(KAFKA_PORT) --redis-url redis://127.0.0.1:$(REDIS_PORT)/0 $(BENCH_ARGS)

bench-quick: topics
	$(PY) ops/bench/run.py --quick --bootstrap 127.0.0.1:$(KAFKA_PORT) --redis-url redis://127.0.0.1:$(REDIS_PORT)/0 $(BENCH_ARGS)

clean: down
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
