# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install, run the embedded default pipeline (prints the results table)
#   make test   - create .venv, install, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch that this machine's package index serves; an unpinned torch pulls CUDA.
TORCH := torch==2.13.0
EXTRAS := distill,compress,bench,faiss,dev

.PHONY: install demo test test-all test-runtime-base lint clean arm64 arm64-reduced test-web
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '$(TORCH)'
	$(PY) -m pip install --quiet '$(TORCH)' -e '.[$(EXTRAS)]'
	touch $@

demo: install
	$(VENV)/bin/edgeret demo

test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m ""

# The runtime on the base install alone (no torch, no extras), in its own fresh venv.
test-runtime-base:
	rm -rf .venv-base
	$(PYTHON) -m venv .venv-base
	.venv-base/bin/python -m pip install --quiet --upgrade pip
	.venv-base/bin/python -m pip install --quiet . pytest hypothesis
	.venv-base/bin/python -c "import importlib.util as u; assert u.find_spec('torch') is None, 'torch leaked into the base install'"
	.venv-base/bin/python -m pytest -q -p no:cacheprovider tests/runtime

# The runtime on an emulated Raspberry Pi 4 (aarch64 Python under user-mode QEMU, Cortex-A72): embeddings and a
# saved index compared with x86, the arm64-marked runtime tests run in the guest (docs/arm64.md). The aarch64
# environment is cached in build/arm64. `arm64` checks the demo's INT8 and INT4 bundles (running the demo first
# if they are missing; it reuses finished stages); `arm64-reduced` checks the committed tiny fixture bundle (CI).
ARM64_BUNDLES := artifacts/bundles/student-int8 artifacts/bundles/student-int4
arm64: install
	@$(foreach b,$(ARM64_BUNDLES),test -f $(b)/manifest.json &&) true || $(VENV)/bin/edgeret demo
	$(PY) -m tools.arm64 $(ARM64_BUNDLES)

arm64-reduced: install
	$(PY) -m tools.arm64 --reduced

# The JavaScript runtime (web/) in a real headless browser: Debian's Chromium (installed when missing), npm ci in
# web/, the Python runtime's answers on the tiny fixture bundle (tools/web), then web/test/run.js (parity, refusals,
# the demo page). ~1 min on a fresh 2-core machine, apt and npm included (README "In a web or desktop app").
WEB_REFS := build/web/fixture
APT_GET := $(shell [ "$$(id -u)" = 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive apt-get
test-web: install
	@command -v chromium >/dev/null 2>&1 || { $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends chromium >/dev/null; }
	@command -v npm >/dev/null 2>&1 || { $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends nodejs npm >/dev/null; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
	$(PY) -m tools.web --bundle tests/runtime/fixtures/tiny_bundle --out $(WEB_REFS)
	node web/test/run.js --refs fixture=$(WEB_REFS)

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf artifacts .pytest_cache .venv-base build
