# wspr: the two commands a newcomer needs are `make run` and `make test`.

CARGO ?= cargo
LISTEN ?= 127.0.0.1:8124
MOUNTTABLE ?= 127.0.0.1:8125

.PHONY: build run test test-rust test-node test-browser js-deps bench lint fmt doc clean fuzz

build:
	$(CARGO) build --release

# The daemon with its embedded mount table (and the demo object), in the
# foreground. Stop it with Ctrl-C.
run: build
	./target/release/wsprd serve --listen $(LISTEN) --mounttable-listen $(MOUNTTABLE) --demo

test: test-rust test-node test-browser

test-rust:
	$(CARGO) test --all-targets
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
