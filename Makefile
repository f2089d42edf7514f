# wspr: the two commands a newcomer needs are `make run` and `make test`.

CARGO ?= cargo
LISTEN ?= 127.0.0.1:8124
MOUNTTABLE ?= 127.0.0.1:8125

.PHONY: build run test test-rust test-node test-browser js-deps bench soak lint fmt doc clean fuzz

build:
	$(CARGO) build --release

# The daemon with its embedded mount table (and the demo object), in the
# foreground. Stop it with Ctrl-C.
run: build
	./target/release/wsprd serve --listen $(LISTEN) --mounttable-listen $(MOUNTTABLE) --demo

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

# npm ci when the lockfile is newer than node_modules (or there is none).
js/node_modules/.package-lock.json: js/package-lock.json
	cd js && npm ci --no-audit --no-fund

js-deps: js/node_modules/.package-lock.json

test-node: js-deps
	$(CARGO) build --bin wsprd
	cd js && $(NODE_TEST) test/*.test.js

# The demo page in headless Chromium (/usr/bin/chromium, Debian's package),
# driven by playwright-core; leaves target/artifacts/demo.png.
test-browser: js-deps
	$(CARGO) build --bin wsprd
	cd js && $(NODE_TEST) test/browser/*.test.js

bench:
	$(CARGO) bench --bench rpc --bench wsprd

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

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

fmt:
	$(CARGO) fmt --all

doc:
	$(CARGO) doc --no-deps

clean:
	$(CARGO) clean
