# rollcalld — the two commands a newcomer needs:
#   make run    install what is missing, build, start the demo station
#   make test   install what is missing, run the whole suite
# Everything is idempotent and quick when already done.

CARGO ?= cargo
DEMO  ?= configs/demo.toml

.PHONY: run test deps-build deps-test deps-run build lint fmt bench faults fuzz deb clean-data

deps-build:
	@scripts/install-deps.sh build
deps-run:
	@scripts/install-deps.sh run
deps-test:
	@scripts/install-deps.sh test

build: deps-build
	$(CARGO) build --release --bins

run: deps-run build
	./target/release/rollcalld --config $(DEMO)

test: deps-test
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean-data:
	rm -rf data/demo

# The Debian package (cargo-deb from crates.io, installed when missing), then
# a check of the file list, modes, conffile and dependencies.
deb: deps-build
	@command -v cargo-deb >/dev/null || $(CARGO) install cargo-deb --locked
	$(CARGO) deb -p rollcalld --output target/debian/
	scripts/deb-check.sh "$$(ls -t target/debian/rollcalld_*.deb | head -n1)"
