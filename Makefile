# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# The demo drives the local E2B emulator. To use real E2B, run with E2B_API_URL= E2B_SANDBOX_URL=
# (empty) and put a real key in Settings → Integrations or E2B_API_KEY.
E2B_EMULATOR_PORT ?= 3000
run: export E2B_EMULATOR_PORT := $(E2B_EMULATOR_PORT)
run: export E2B_API_URL ?= http://127.0.0.1:$(E2B_EMULATOR_PORT)
run: export E2B_SANDBOX_URL ?= http://127.0.0.1:$(E2B_EMULATOR_PORT)

.PHONY: run test lint fmt bench reliability soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.lock
	touch $@

## make run: migrate, seed the demo org and start the Procfile's processes (web, worker, beat,
## emulator). If one exits, the others stop and make run fails saying which and why; Ctrl-C,
## SIGTERM or closing the terminal stops them all (rensei/supervisor.py).
run: $(VENV)/.installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	@echo ""
	@echo "  Rensei is starting at http://127.0.0.1:$(PORT)/"
	@echo ""
	$(BIN)/python -m rensei.supervisor Procfile --port $(PORT)

## make test: the whole suite (SQLite unless DATABASE_URL is set). Browser journeys run in a
## second pytest process: Playwright's sync API keeps an event loop on the main thread that
## would clash with the asyncio-based emulator tests. Both phases run and are reported even
## when the first fails; the target fails if either did. The browser phase needs Debian's
## chromium: tests/ensure-chromium installs it when missing (as root) or says how. The first
## phase runs in TEST_PROCESSES pytest-xdist workers (default: one per core), each with a test
## database, var dir and default queue of its own (tests/settings.py); TEST_PROCESSES=0 runs
## it in one process. xdist's default distribution keeps pytest-django's order on each worker
## (tests in a transaction before the transactional ones, whose flush empties the migrations'
## rate cards too); --dist loadfile would not.
TEST_PROCESSES ?= auto
test: $(VENV)/.installed
	@browser=0; bash tests/ensure-chromium || browser=missing; \
	echo "== make test: tests without a browser"; \
	$(BIN)/python -m pytest -m "not browser" -n $(TEST_PROCESSES) $(PYTEST_ARGS); first=$$?; \
	if [ "$$browser" = 0 ]; then echo "== make test: browser tests"; \
	  $(BIN)/python -m pytest -m browser $(PYTEST_ARGS); browser=$$?; fi; \
	verdict() { case "$$1" in 0) echo passed;; 5) echo "no tests selected";; \
	  missing) echo "NOT RUN: chromium is missing (see above)";; *) echo "FAILED (pytest exit $$1)";; esac; }; \
	echo ""; \
	echo "== make test: tests without a browser: $$(verdict $$first)"; \
	echo "== make test: browser tests: $$(verdict $$browser)"; \
	case "$$first" in 0|5) ;; *) exit 1;; esac; \
	case "$$browser" in 0|5) ;; *) exit 1;; esac

## make reliability: faults, races, bad input, leaks and load (tests/reliability, needs Redis,
## and RabbitMQ for its broker test; CI also gives it PostgreSQL), then docs/reliability.md
## from the figures it measured.
reliability: $(VENV)/.installed
	rm -rf artifacts/reliability
	$(BIN)/python -m pytest tests/reliability $(PYTEST_ARGS); status=$$?; \
	$(BIN)/python -m tests.reliability.report && exit $$status

## make soak: the make run stack with demo_dispatcher --rate 60 against it for SOAK_SECONDS
## (default 1800) on the embedded default, in a var dir of its own, on PORT and
## E2B_EMULATOR_PORT; fails if a process died or an action did not reach its end state.
## Writes the soak section of docs/reliability.md; logs in artifacts/soak/.
SOAK_SECONDS ?= 1800
soak: $(VENV)/.installed
	$(BIN)/python -m tests.reliability.soak --seconds $(SOAK_SECONDS) --port $(PORT) --emulator-port $(E2B_EMULATOR_PORT)

## make lint: ruff, formatting, mypy, the import layers (import-linter, contracts in
## pyproject.toml) and missing migrations.
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python manage.py makemigrations --check --dry-run

fmt: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## make bench: benchmarks on PostgreSQL + Redis (loopback); rewrites docs/performance.md.
bench: $(VENV)/.installed
	bash bench/ensure-wrk
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf var/broker var/results var/*.sqlite3*
