# wspr: the two commands a newcomer needs are `make run` and `make test`.

CARGO ?= cargo
LISTEN ?= 127.0.0.1:8124
MOUNTTABLE ?= 127.0.0.1:8125

.PHONY: build run test test-rust bench lint fmt doc clean

build:
	$(CARGO) build --release

# The daemon with its embedded mount table (and the demo object), in the
# foreground. Stop it with Ctrl-C.
run: build
	./target/release/wsprd serve --listen $(LISTEN) --mounttable-listen $(MOUNTTABLE) --demo

test: test-rust

test-rust:
	$(CARGO) test --all-targets
	$(CARGO) test --doc

bench:
	$(CARGO) bench --bench rpc --bench wsprd

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
