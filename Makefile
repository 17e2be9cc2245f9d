# The two commands of the README: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Debian packages: the private redis-server, the busybox base, and the real peers tests check us against.
DEBS := redis-server busybox-static skopeo umoci runc docker-registry iproute2 gcc libc6-dev
# Only the tests need a browser: Debian's chromium, driven by Playwright.
TEST_DEBS := chromium
# Front-end libraries from npm, as package-lock.json pins them (served from node_modules).
NODE_STAMP := node_modules/.installed-stamp

.PHONY: run test install debs npm-debs test-debs lint

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap
	exec $(PY) manage.py serve

test: install test-debs
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .

# Docker's default seccomp profile, from Debian's package of Docker's Go sources (only that file,
# not the package and its Go dependencies); the runtime reads it from the venv.
SECCOMP := $(VENV)/share/webengine/seccomp/default.json

# The native runtime's container init (containers/engine/runtime/init.c): static, as a standby's
# init stays in the container's root, waiting for its process.
INIT := $(VENV)/libexec/webengine/webengine-init

install: debs $(STAMP) $(SECCOMP) $(INIT) $(NODE_STAMP)

define install_debs
	@missing=""; for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

debs:
	$(call install_debs,$(DEBS))
	@command -v npm >/dev/null || $(MAKE) --no-print-directory npm-debs

npm-debs:
	$(call install_debs,nodejs npm)

test-debs:
	$(call install_debs,$(TEST_DEBS))

$(NODE_STAMP): package.json package-lock.json | debs
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

$(SECCOMP): | $(STAMP)
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; cd "$$tmp"; \
	apt-get download -qq golang-github-docker-docker-dev 2>/dev/null || { apt-get update -qq && apt-get download -qq golang-github-docker-docker-dev; }; \
	dpkg-deb --fsys-tarfile golang-github-docker-docker-dev_*.deb | tar -x ./usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json; \
	mkdir -p $(CURDIR)/$(dir $@); cp usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json $(CURDIR)/$@

$(INIT): containers/engine/runtime/init.c | $(STAMP)
	mkdir -p $(dir $@)
	cc -O2 -Wall -Wextra -Werror -static -o $@ $<

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@
