# Entry points: make test | make demo | make bench | make soak | make docs | make lint | make image
# Each installs what it needs by itself (virtualenv, Python deps, helm/kubectl, system binaries).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TOOLS_STAMP := .tools/.fetched
SYSTEM_DEPS := bwrap=bubblewrap prlimit=util-linux redis-server=redis-server redis-cli=redis-tools redis-benchmark=redis-tools haproxy=haproxy chromium=chromium \
	docker-registry=docker-registry \
	$(IMAGE_DEPS)
# The image build and container tests (docs/image.md): podman on runc, netavark networks with DNS, the pods'
# pause binary, debootstrap for the base, iptables + nsenter to mute one pod's Redis link.
IMAGE_DEPS := podman=podman runc=runc /usr/lib/podman/netavark=netavark /usr/lib/podman/aardvark-dns=aardvark-dns \
	catatonit=catatonit debootstrap=debootstrap iptables=iptables nsenter=util-linux
# make image ENGINE=docker builds with a Docker daemon and the Dockerfile's own FROM instead.
ENGINE ?= auto

export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export AIFACTORY_HELM4 := $(CURDIR)/.tools/helm4/helm
export AIFACTORY_HELM3 := $(CURDIR)/.tools/helm3/helm

NODE_BENCH := .cache/node-bench
NODE_STAMP := $(NODE_BENCH)/.installed

.PHONY: test demo bench soak docs lint image venv tools system-deps node-bench clean

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing the project with test deps"
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[server,cluster,test,bench]'
	@touch $@

venv: $(STAMP)

$(TOOLS_STAMP): scripts/fetch_tools.py | $(STAMP)
	@echo "==> fetching pinned helm v4.3.1, helm v3.17.2 and kubectl v1.37.1 into .tools/"
	@$(PY) scripts/fetch_tools.py
	@touch $@

tools: $(TOOLS_STAMP)

system-deps:
	@echo "==> checking system binaries ($(SYSTEM_DEPS))"
	@scripts/ensure_system_deps.sh $(SYSTEM_DEPS)

# The benchmark's Node peers (socket.io + redis-adapter, ws), pinned by bench/node/package-lock.json.
$(NODE_STAMP): bench/node/package.json bench/node/package-lock.json
	@scripts/ensure_system_deps.sh node=nodejs npm=npm
	@echo "==> npm ci bench/node into $(NODE_BENCH)/"
	@mkdir -p $(NODE_BENCH)
	@cp bench/node/package.json bench/node/package-lock.json $(NODE_BENCH)/
	@npm ci --prefix $(NODE_BENCH) --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

node-bench: $(NODE_STAMP)

lint: venv
	@echo "==> ruff"
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@echo "==> mypy (strict: aifactory, deploy, harness, validator)"
	@$(VENV)/bin/mypy

test: venv tools system-deps node-bench lint
	@echo "==> pytest"
	@$(PY) -m pytest

demo: venv tools system-deps
	@echo "==> demo"
	@$(PY) scripts/demo.py

bench: venv tools system-deps node-bench
	@echo "==> benchmarks"
	@$(PY) -m bench

soak: venv tools system-deps
	@echo "==> soak"
	@$(PY) -m bench.soak

image: venv system-deps
	@echo "==> image: building the aifactory-server image (scripts/image/build.py, engine $(ENGINE))"
	@$(PY) scripts/image/build.py --engine $(ENGINE)

docs: venv
	@echo "==> generating docs/values.md and chart/README.md from chart/values.schema.json + chart/values.yaml"
	@$(PY) scripts/gen_values_docs.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .ruff_cache
