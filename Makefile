# flinkop: `make test` and `make demo` work on a fresh Debian machine with nothing installed by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BED_DIR := $(CURDIR)/.bed
export PYTHONPATH := $(CURDIR)/tests:$(CURDIR)/operator

.PHONY: test unit integration lint demo demo-app demo-down clean distclean system-deps venv bed-binaries node-binaries bed-images bench bench-app bench-10k help

help:
	@echo "make test      - install what is missing, lint, run unit and integration tests on the real bed"
	@echo "make demo      - start the bed and the operator, apply a sample FlinkJob, upgrade it, show status"
	@echo "make demo-app  - the same in application mode on the bed's real node (root, slower, one node per machine)"
	@echo "make demo-down - stop what a demo started, its node too (keeps .bed/)"
	@echo "make clean     - stop everything the demo started and remove .bed/"
	@echo "make bench     - benchmarks B1-B4, results in bench/RESULTS.md (B4 on the bed's real node: root)"
	@echo "make bench-app - benchmark B4 (application-mode upgrade) on the bed's real node (root)"

system-deps:
	@bash tests/bed/scripts/install-system-deps.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

FLINKOP_CACHE := $(or $(FLINKOP_CACHE_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/flinkop)

# The kube-apiserver build (about 5 minutes, once) and the Flink jars, both cached in ~/.cache/flinkop.
# When the node's binaries are not built yet, the apiserver's source tree is kept for their build
# (which then reuses its generated code and Go cache, and removes the tree).
bed-binaries: system-deps venv
	$(if $(wildcard $(FLINKOP_CACHE)/kube-node-v1.20.2/kubelet),,FLINKOP_KEEP_KUBE_BUILD=1) \
	  $(PY) -c "from testbed.kube import ensure_apiserver_binary; ensure_apiserver_binary()"
	$(PY) -c "from testbed.flink import ensure_flink_dist; ensure_flink_dist()"

# The real node's binaries (kubelet, kube-controller-manager, kube-scheduler, pause; about 6 minutes
# once, from the same Debian source package) and its images (pause, busybox, Flink 2.3, the operator;
# about 2 minutes once), all cached in ~/.cache/flinkop. See tests/testbed/node.py and images.py.
node-binaries: bed-binaries
	$(PY) -c "from testbed.node import ensure_node_binaries; ensure_node_binaries()"

bed-images: node-binaries
	$(PY) -m testbed.images

lint: venv
	$(VENV)/bin/ruff check operator tests deploy bench
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/pytest tests/unit -q

integration: bed-images
	$(VENV)/bin/pytest tests/integration -v

test: bed-images lint
	$(VENV)/bin/pytest tests -v --durations=15

# Benchmarks (not part of `make test`): results and method in bench/RESULTS.md.
bench: bed-images
	$(PY) bench/b1_upgrade_overhead.py --pairs 7 --out bench/results/b1.json
	$(PY) bench/b2_rescale_downtime.py --pairs 5 --out bench/results/b2.json
	$(PY) bench/b3_scale.py --jobs 1000 --clusters 10 --out bench/results/b3.json
	$(PY) bench/b4_app_upgrade.py --pairs 3 --out bench/results/b4.json
	$(PY) bench/report.py

# B4: an application-mode upgrade by the operator against the same steps by hand, on the bed's real node
# (root; one node per machine, so not while tests with the node run; the bed's start and a few minutes
# per pair). Not part of `bench`.
bench-app: bed-images
	$(PY) bench/b4_app_upgrade.py --pairs 3 --out bench/results/b4.json
	$(PY) bench/report.py

# B3 pushed to 10,000 FlinkJobs over 100 simulated clusters, to see where one operator breaks first
# (up to an hour; its results go into bench/RESULTS.md too).
bench-10k: bed-binaries
	$(PY) bench/b3_scale.py --jobs 10000 --clusters 100 --budget 3000 --out bench/results/b3-10k.json
	$(PY) bench/report.py

# A kind cluster, the operator image, deploy/ and deploy/flink-session/, one savepoint upgrade (needs
# docker with a running engine, kind and kubectl; not run by `make test`: see tests/e2e/kind.sh).
.PHONY: e2e-kind
e2e-kind:
	bash tests/e2e/kind.sh

demo: bed-binaries
	$(PY) -m testbed demo --dir $(BED_DIR)

# Application mode on the bed's real node: a FlinkJob with spec.cluster, upgraded by an image change;
# the bed (node included) keeps running until `make demo-down` or `make clean`.
demo-app: bed-images
	$(PY) -m testbed demo-app --dir $(BED_DIR)

demo-down:
	-@[ -x $(PY) ] && $(PY) -m testbed down --dir $(BED_DIR) || true

clean: demo-down
	rm -rf $(BED_DIR) .pytest_cache .mypy_cache .ruff_cache
	find operator tests -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info operator/*.egg-info

# The randomized convergence soak on a bed of its own (tests/soak/; what it checks: tests/soak/RESULTS.md).
# `make soak SEED=1234 OPS=30` replays a run; without SEED a seed is drawn and printed.
SEED ?=
OPS ?= 300
.PHONY: soak
soak: bed-binaries
	$(PY) -m soak $(if $(SEED),--seed $(SEED)) --ops $(OPS)
