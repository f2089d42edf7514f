# wspr: the two commands a newcomer needs are `make run` and `make test`.
# `make test` installs what its tests need when it is missing (Chromium
# from Debian, js/'s npm packages from the lockfile), saying so in one line.

CARGO ?= cargo
LISTEN ?= 127.0.0.1:8124
# Empty: the daemon's default, 127.0.0.1:8125 (or a free port, with a
# warning, when that is taken).
MOUNTTABLE ?=

.PHONY: build run test test-rust test-node test-browser js-deps browser-deps node-check bench soak lint fmt doc clean fuzz

build:
	$(CARGO) build --release

# The daemon with its embedded mount table (and the demo object), in the
# foreground. Stop it with Ctrl-C.
run: build
	./target/release/wsprd serve --listen $(LISTEN) $(if $(MOUNTTABLE),--mounttable-listen $(MOUNTTABLE)) --demo

test: test-rust test-node test-browser

# (Not --all-targets: that would also run the benches, which have no test
# harness, in full and in a debug build. `make lint` checks they compile.)
test-rust:
	$(CARGO) test --lib --bins --tests --examples
	$(CARGO) test --doc

# The JavaScript library (js/) against a real daemon: node's test runner.
# Node 20 has its WebSocket behind a flag; later versions accept it too.
NODE ?= node
NODE_TEST = $(NODE) --experimental-websocket --test

# Node 20 or later runs the JavaScript tests (Debian 12's own is 18).
node-check:
	@major=$$($(NODE) -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0); \
	if [ "$$major" -lt 20 ]; then \
	  echo "make: the JavaScript tests need Node 20 or later (found: $$($(NODE) --version 2>/dev/null || echo none))" >&2; \
	  exit 1; \
	fi

# npm ci when the lockfile is newer than node_modules (or there is none).
js/node_modules/.package-lock.json: js/package-lock.json | node-check
	@echo "make: installing js/'s npm packages from js/package-lock.json (npm ci: playwright-core, typescript)"
	cd js && npm ci --no-audit --no-fund --loglevel=error

js-deps: js/node_modules/.package-lock.json

# Chromium for the browser tests: Debian's package, installed with apt-get
# (as root, or through sudo) when /usr/bin/chromium is missing. apt-get's
# own output goes to target/apt-chromium.log (shown if it fails).
CHROMIUM ?= /usr/bin/chromium
browser-deps:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$(CHROMIUM)" != /usr/bin/chromium ]; then \
	    echo "make: CHROMIUM=$(CHROMIUM) is missing" >&2; exit 1; \
	  fi; \
	  echo "make: installing Chromium from Debian for the browser tests (apt-get install chromium)"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  mkdir -p target; \
	  { $$sudo apt-get update -q && \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
	    > target/apt-chromium.log 2>&1 || { cat target/apt-chromium.log >&2; exit 1; }; \
	fi

test-node: js-deps
	$(CARGO) build --bin wsprd
	cd js && $(NODE_TEST) test/*.test.js

# The demo page in headless Chromium (/usr/bin/chromium, Debian's package),
# driven by playwright-core; leaves screenshots in target/artifacts/.
test-browser: js-deps browser-deps
	$(CARGO) build --bin wsprd --example test_cert
	cd js && CHROMIUM=$(CHROMIUM) $(NODE_TEST) test/browser/*.test.js

bench:
	$(CARGO) bench --bench rpc --bench wsprd --bench reliability

# Mixed traffic with misbehaving peers against a wsprd process for
# WSPR_SOAK_SECS (default 600), then checks answers, threads, descriptors
# and memory. A 15-second version runs in `make test`.
WSPR_SOAK_SECS ?= 600
soak:
	WSPR_SOAK_SECS=$(WSPR_SOAK_SECS) $(CARGO) test --release --test soak -- --nocapture

# JavaScript calling JavaScript through wsprd and through Crossbar.io (the
# reference WAMP router, autobahn's JavaScript client), alternating, plus a
# websocket echo floor and a relay floor (the echo through a byte-copying
# relay, bench/peers/relay.rs): a table, target/bench/peers.json and peers.svg. See
# docs/performance.md. Crossbar.io goes into a virtual environment under
# target/peers and the npm packages into bench/peers/node_modules, each
# installed once and again only when its pins change.
PYTHON ?= python3
PEERS_VENV = target/peers/venv

$(PEERS_VENV)/.installed: bench/peers/requirements.txt bench/peers/constraints.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet --disable-pip-version-check \
		-r bench/peers/requirements.txt -c bench/peers/constraints.txt
	touch $@

# autobahn 26 declares node >= 22 but runs on Node 20's flagged WebSocket:
# npm's engine warning is silenced.
bench/peers/node_modules/.package-lock.json: bench/peers/package-lock.json
	cd bench/peers && npm ci --no-audit --no-fund --loglevel=error

.PHONY: bench-peers
bench-peers: build $(PEERS_VENV)/.installed bench/peers/node_modules/.package-lock.json
	$(CARGO) build --release --example peers_relay
	$(NODE) --experimental-websocket --disable-warning=ExperimentalWarning bench/peers/run.mjs

# Every fuzz target (fuzz/, docs/fuzzing.md) for FUZZ_SECS seconds each,
# one after another; fails if any finds a crash. Installs cargo-fuzz if
# missing. Not part of `make test`. FUZZ_TARGETS="names dispatch" picks some.
FUZZ_SECS ?= 60
FUZZ_TARGETS ?=

fuzz:
	CARGO=$(CARGO) FUZZ_SECS=$(FUZZ_SECS) ./fuzz/run.sh $(FUZZ_TARGETS)

# The tests build the library with its `testing` feature (internals made
# public to them); the library is also checked as users build it, with
# the daemon and without it (`--no-default-features`: the RPC runtime
# alone, none of the daemon's dependencies).
# Also fails on modules that import each other in a loop
# (tools/module_cycles.py: the standard library only, under a second).
lint:
	$(PYTHON) tools/module_cycles.py src
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --lib --bins -- -D warnings
	$(CARGO) clippy --lib --no-default-features -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

fmt:
	$(CARGO) fmt --all

doc:
	$(CARGO) doc --no-deps

clean:
	$(CARGO) clean
