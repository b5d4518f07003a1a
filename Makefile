# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both build .venv from nothing (and the Debian packages the browser tests need), and are quick
# when it is already there: the venv is rebuilt only when pyproject.toml changes.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
ART := artifacts
CORPUS := $(ART)/data/openmoji
RUN := $(ART)/runs/default
INDEX := $(ART)/indexes/default
HOST ?= 127.0.0.1
PORT ?= 8000
# Every benchmark runs under $(HEAVY): this lock, so it never shares the cores with another
# heavy run (its figures are ratios of what the machine gives); the shared machine's lock
# where there is one.
HEAVY_LOCK ?= $(if $(wildcard /work/.),/work/heavy.lock,/tmp/xmr-heavy.lock)
HEAVY := flock $(HEAVY_LOCK) nice -n 10

.DEFAULT_GOAL := help
.PHONY: help install system-deps demo demo-artifacts test test-slow lint bench bench-features
.PHONY: bench-scale bench-index docker-smoke bench-service bench-service-ab bench-gil bench-cpu-split bench-quality bench-probes

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP) ## create .venv with everything (CPU torch, faiss-cpu, dev tools)

system-deps: ## Debian packages for the browser tests (chromium + chromedriver)
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

# The importer (and the Unicode data it reads) changing re-imports: PNGs already rendered are kept.
$(CORPUS)/manifest.jsonl: models/data/importers/openmoji.py models/resources/cldr-annotations-en-41.xml.gz | $(STAMP)
	$(PY) -m xmr data openmoji $(CORPUS)

# A changed default config retrains, and a new checkpoint re-indexes (a new generation, swapped
# in atomically); otherwise both are reused.
$(RUN)/checkpoint.pt: configs/default.yaml | $(CORPUS)/manifest.jsonl
	$(PY) -m xmr train --data $(CORPUS) --config configs/default.yaml --out $(RUN)

$(INDEX)/CURRENT: $(RUN)/checkpoint.pt
	$(PY) -m xmr index build --checkpoint $(RUN)/checkpoint.pt --data $(CORPUS) --out $(INDEX) --cache $(ART)/cache

demo-artifacts: $(STAMP) $(INDEX)/CURRENT ## corpus, default checkpoint and index (reused when present)

demo: demo-artifacts ## prepare OpenMoji, train, index, serve the search page on http://127.0.0.1:8000
	@echo "search page: http://$(HOST):$(PORT)/"
	$(PY) -m xmr serve --index $(INDEX) --checkpoint $(RUN)/checkpoint.pt --host $(HOST) --port $(PORT)

test: $(STAMP) system-deps ## the default test suite (no slow, no gpu tests)
	$(PY) -m pytest

test-slow: $(STAMP) system-deps ## the long checks only (fault injection, load, schemathesis)
	$(PY) -m pytest -m slow

lint: $(STAMP) ## ruff on everything, mypy on index/ and service/
	$(PY) -m ruff check .
	$(PY) -m mypy

bench: bench-features bench-scale bench-index bench-service bench-service-ab bench-gil bench-cpu-split bench-quality bench-probes ## every benchmark (results in bench/results/)

bench-features: $(STAMP) $(CORPUS)/manifest.jsonl ## feature extraction throughput, cold vs cached
	$(HEAVY) $(PY) bench/features.py --data $(CORPUS)

docker-smoke: ## build the CPU image, run it, search + ingest, compose jobs (needs docker; not in `test`)
	docker/smoke.sh

bench-index: $(STAMP) $(RUN)/checkpoint.pt ## Flat/IVF/HNSW at 100k and 1M (recall, QPS, memory) + batch job vs raw encoder (~30 min)
	$(HEAVY) $(PY) bench/index_bench.py --checkpoint $(RUN)/checkpoint.pt --data $(CORPUS)

bench-scale: $(STAMP) $(RUN)/checkpoint.pt ## Ray engine vs local (OpenMoji + 100k synthetic texts), FAISS vs Milvus recall@10
	$(HEAVY) $(PY) bench/scale_bench.py --checkpoint $(RUN)/checkpoint.pt --data $(CORPUS) --cache $(ART)/cache

bench-service: $(STAMP) $(RUN)/checkpoint.pt ## HTTP search at 1/8/32 clients, OpenMoji + 100k synthetic (default index and Flat): QPS, p50/p99, recall, memory (~15 min)
	$(HEAVY) $(PY) bench/service_bench.py --checkpoint $(RUN)/checkpoint.pt --data $(CORPUS) --index $(INDEX) --cache $(ART)/cache

bench-service-ab: $(STAMP) $(RUN)/checkpoint.pt $(INDEX)/CURRENT ## serving settings side by side: encoder workers and threads (5 interleaved repeats, ~8 min)
	$(HEAVY) $(PY) bench/service_ab.py --checkpoint $(RUN)/checkpoint.pt --data $(CORPUS) --index $(INDEX)

bench-gil: $(STAMP) $(RUN)/checkpoint.pt ## two encoder workers beside a busy Python thread, eager vs TorchScript-traced MiniLM (why the service's workers wait; ~2 min)
	$(HEAVY) $(PY) bench/gil_probe.py --checkpoint $(RUN)/checkpoint.pt --data $(CORPUS)

bench-cpu-split: $(STAMP) $(RUN)/checkpoint.pt $(INDEX)/CURRENT ## CPU per request at 32 clients by server thread and load generator, and the QPS bound it sets (~2 min)
	$(HEAVY) $(PY) bench/cpu_split.py --checkpoint $(RUN)/checkpoint.pt --data $(CORPUS) --index $(INDEX)

bench-quality: $(STAMP) $(CORPUS)/manifest.jsonl ## every method x 3 seeds + the thesis ablations on OpenMoji (test mAP; ~40-60 min)
	$(HEAVY) $(PY) bench/quality.py --data $(CORPUS) --cache $(ART)/cache

bench-probes: $(STAMP) $(CORPUS)/manifest.jsonl ## finest-label linear probes of the backbone features: cached views, EfficientNet stage ends, last block trained vs frozen (issue 3; ~10 min)
	$(HEAVY) $(PY) bench/feature_probes.py --data $(CORPUS) --cache $(ART)/cache
