# Poolkeeper: `make run` starts the offline stack, `make test` runs lint and the tests.
# Both install what they need (virtualenv, pip, npm ci) on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 7071

.PHONY: deps az run demo test screenshots lint checkov bench chaos clean lock

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Poolkeeper needs Python 3.11 (found " + sys.version.split()[0] + "); set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The whole tree is locked with every file's hash (requirements-dev.txt holds requirements.txt's
# pins and the tools'): pip refuses any file whose hash is not in the lock.
$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.txt
	touch $@

# Re-lock after changing a pin in requirements.in or requirements-dev.in (pip-tools, in a
# virtualenv of its own; it keeps the locked versions of everything a change does not touch).
LOCK_VENV := .venv-lock
LOCK := $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links

$(LOCK_VENV)/.installed: | $(BIN)/python
	$(BIN)/python -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet pip-tools==7.7.0
	touch $@

lock: $(LOCK_VENV)/.installed
	$(LOCK) --output-file=requirements.txt requirements.in
	$(LOCK) --output-file=requirements-dev.txt requirements-dev.in

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

deps: $(VENV)/.installed node_modules/.installed

# The Azure CLI has its own virtualenv too (azure-cli pins many packages): the tests run it
# against the simulator, and `make run` users can (docs/local-stack.md). Installed once.
VENV_AZ := .venv-az

$(VENV_AZ)/.installed: requirements-az.txt | $(BIN)/python
	$(BIN)/python -m venv $(VENV_AZ)
	$(VENV_AZ)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_AZ)/bin/python -m pip install --quiet -r requirements-az.txt
	touch $@

az: $(VENV_AZ)/.installed

run: deps
	$(BIN)/python -m local.stack --scenario local/scenarios/small.json --port $(PORT)

# One command, one story (docs/local-stack.md#the-demo): the stack on local/scenarios/demo.json, a
# P1 and its one scale-up, a delete Azure fails, a nightly patch and an image run; exit 0 only if
# every step did what it said. DEMO_ARGS=--keep leaves the stack up for the status page afterwards;
# --short skips the patch and image runs.
DEMO_ARGS ?=
demo: deps
	$(BIN)/python -m local.demo $(DEMO_ARGS)

# checkov has its own virtualenv: its pins clash with requirements-dev.txt (pycep-parser).
CHECKOV_VENV := .venv-checkov

$(CHECKOV_VENV)/.installed: requirements-checkov.txt | $(BIN)/python
	$(BIN)/python -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

# Infra security scan; every skip is inline in infra/ with its reason. --skip-download: offline.
checkov: $(CHECKOV_VENV)/.installed
	$(CHECKOV_VENV)/bin/checkov --directory infra --compact --quiet --skip-download

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Tests run in parallel (pytest-xdist): they mostly wait on simulated time, so a 2-core machine
# runs several at once; each worker starts its own Azurite, simulator and hosts on free ports.
# 8 workers beat 6 on a loaded 2-core machine (15.8 vs 19 min); TEST_WORKERS=0 runs them in turn.
TEST_WORKERS ?= 8
test: deps az lint checkov
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

# The README's and docs/dashboard.md's picture of the status page: the browser test, publishing
# its screenshot into docs/img (`make test` keeps it in a temp dir, so the tree stays clean).
screenshots: deps
	$(BIN)/python -m pytest tests/integration/test_dashboard_browser.py -p no:cacheprovider \
		--screenshots docs/img

bench: deps
	$(BIN)/python -m bench.cold_start
	$(BIN)/python -m bench.sim_vm_list
	$(BIN)/python -m bench.drain_110
	$(BIN)/python -m bench.arm_calls
	$(BIN)/python -m bench.fleet_reads
	$(BIN)/python -m bench.isolation
	$(BIN)/python -m bench.capacity_eval
	$(BIN)/python -m bench.alert_intake
	$(BIN)/python -m bench.alert_latency
	$(BIN)/python -m bench.patch_rollout
	$(BIN)/python -m bench.image_pipeline

# The chaos suite's large run (docs/chaos.md): 500 fault schedules, 25 rounds of 20, a third of them
# with host kills or Azurite restarts; figures in bench/results/chaos.md.
CHAOS_SCHEDULES ?= 500
chaos: deps
	$(BIN)/python -m pytest tests/chaos -p no:cacheprovider --chaos-schedules $(CHAOS_SCHEDULES) \
		--chaos-pools 20 --chaos-first-seed 1000 --chaos-report bench/results/chaos.md

clean:
	rm -rf $(VENV) $(VENV_AZ) node_modules .pytest_cache .ruff_cache
