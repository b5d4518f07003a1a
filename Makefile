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
# Twemoji's SVGs (npm `@twemoji/svg`, graphics CC BY 4.0): a second view of the train emoji,
# fetched once by `npm pack` from the registry npm is configured with. docker/twemoji.py pins
# the version and npm's integrity for the Docker demo bake and for this file alike.
TWEMOJI := $(ART)/vendor/twemoji-svg-$(shell $(PYTHON) docker/twemoji.py --version)
HOST ?= 127.0.0.1
PORT ?= 8000
# Every benchmark runs under $(HEAVY): this lock, so it never shares the cores with another
# heavy run (its figures are ratios of what the machine gives). Set HEAVY_LOCK to share one
# lock with other checkouts or tools on the same machine.
HEAVY_LOCK ?= $(or $(TMPDIR),/tmp)/xmr-heavy.lock
HEAVY := flock $(HEAVY_LOCK) nice -n 10

.DEFAULT_GOAL := help
.PHONY: help install system-deps twemoji demo demo-artifacts test test-slow test-demo lint
.PHONY: docker-smoke
.PHONY: bench bench-features bench-index bench-scale bench-service bench-quality bench-peers

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP) ## create .venv with everything (CPU torch, faiss-cpu, dev tools)

system-deps: ## Debian packages the tests use: chromium + chromedriver (the page), wrk (load runs)
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] || ! command -v wrk >/dev/null; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver wrk >/dev/null; \
	fi

$(TWEMOJI)/.fetched:
	$(PYTHON) docker/twemoji.py $(@D)
	touch $@

twemoji: $(TWEMOJI)/.fetched ## fetch the pinned Twemoji SVGs (npm, integrity checked) into artifacts/vendor

# The importer (and the Unicode data it reads) changing re-imports: PNGs already rendered are kept.
# The train emoji get a second view from Twemoji (configs/default.yaml says what it gained).
$(CORPUS)/manifest.jsonl: models/data/importers/openmoji.py models/resources/cldr-annotations-en-41.xml.gz $(TWEMOJI)/.fetched | $(STAMP)
	$(PY) -m xmr data openmoji $(CORPUS) --twemoji $(TWEMOJI)

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

# The default suite runs one pytest worker per core and one more (pytest-xdist; TEST_WORKERS=0
# runs it in one process): many tests wait on a server or command they started, and the extra
# worker runs while they wait. Each test file stays on one worker, so that a file's shared
# server or export is made once.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: $(STAMP) system-deps ## the default test suite (no slow, no gpu tests)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test-slow: $(STAMP) system-deps ## the long checks only (fault injection, load, schemathesis)
	$(PY) -m pytest -m slow

test-demo: demo-artifacts system-deps ## the page on the demo artifacts in real Chromium (typing `cat` shows a cat first)
	$(PY) -m pytest tests/service/test_page.py

lint: $(STAMP) ## ruff on everything, mypy on models/, index/ and service/
	$(PY) -m ruff check .
	$(PY) -m mypy

docker-smoke: ## build the CPU image, run it, search + ingest, compose jobs (needs docker; as root it starts dockerd if none runs)
	docker/smoke.sh

bench: bench-features bench-index bench-scale bench-service bench-quality bench-peers ## every benchmark (results in bench/results/)

bench-features: $(STAMP) $(CORPUS)/manifest.jsonl ## feature extraction throughput, cold vs cached
	$(HEAVY) $(PY) -m bench.features --data $(CORPUS)

bench-index: $(STAMP) $(RUN)/checkpoint.pt ## Flat/IVF/HNSW at 100k and 1M, same-distribution and cross-modal queries (recall, QPS, memory) (~35 min)
	$(HEAVY) $(PY) -m bench.index_bench --checkpoint $(RUN)/checkpoint.pt --data $(CORPUS)

bench-scale: $(STAMP) $(RUN)/checkpoint.pt ## Ray engine vs local (OpenMoji + 100k synthetic texts), FAISS vs Milvus recall@10
	$(HEAVY) $(PY) -m bench.scale_bench --checkpoint $(RUN)/checkpoint.pt --data $(CORPUS) --cache $(ART)/cache

# wrk, the one load generator of the served benchmarks, comes from Debian.
NEED_WRK = @command -v wrk >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk >/dev/null; }

bench-service: $(STAMP) $(RUN)/checkpoint.pt ## HTTP search at 1/8/32 clients under wrk, vector and hybrid side by side, OpenMoji + 100k captioned synthetic (default index and Flat): QPS, p50/p99, recall, memory (~40 min)
	$(NEED_WRK)
	$(HEAVY) $(PY) -m bench.service_bench --checkpoint $(RUN)/checkpoint.pt --data $(CORPUS) --index $(INDEX) --cache $(ART)/cache

# The peers run from their own venvs under $(ART)/peers (made from PyPI on the first run, then
# reused).
bench-peers: $(STAMP) $(INDEX)/CURRENT ## xmr serve vs txtai and infinity-emb, same MiniLM and queries, 1/8/32 clients under wrk (~15 min; first run installs the peers)
	$(NEED_WRK)
	$(HEAVY) $(PY) -m bench.peers --checkpoint $(RUN)/checkpoint.pt --data $(CORPUS) --index $(INDEX)

bench-quality: $(STAMP) $(CORPUS)/manifest.jsonl ## every method x 3 seeds + the thesis ablations on OpenMoji (test mAP; ~40-60 min)
	$(HEAVY) $(PY) -m bench.quality --data $(CORPUS) --cache $(ART)/cache
