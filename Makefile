# rollcalld — the two commands a newcomer needs:
#   make run    install what is missing, build, start the demo station
#   make test   install what is missing, run the whole suite
# Everything is idempotent and quick when already done.

SHELL := /bin/bash
CARGO ?= cargo
DEMO  ?= configs/demo.toml

.PHONY: run test deps-build deps-test deps-run build lint fmt bench faults fuzz deb deb-tool clean-data

deps-build:
	@scripts/install-deps.sh build
deps-run:
	@scripts/install-deps.sh run
deps-test:
	@scripts/install-deps.sh test

build: deps-build
	$(CARGO) build --release --bins

# The demo: a loopback mosquitto, then the daemon in the foreground with two
# simulated base stations; scripts/demo.sh starts a roll call once the daemon
# serves and shows it live (Ctrl-C stops everything).
run: deps-run build
	@scripts/start-mosquitto.sh 1883 data/mosquitto
	@scripts/demo.sh & trap 'kill $$! 2>/dev/null' EXIT; \
	  ./target/release/rollcalld --config $(DEMO)

test: deps-test deb-tool
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Every bench; writes bench/RESULTS.md.
bench: deps-test
	scripts/bench.sh

# Every fault scenario in its full form (the short form of each runs in
# `make test`), printing its `FAULT ...` figures. About 15 minutes.
FAULT_TESTS = mqtt_outage rollcall_kill9 channel_recording fault_kill9_storm fault_clock \
	fault_disk_full fault_serial_unplug fault_lossy_roip fault_watchdog
faults: deps-test
	ROLLCALL_FAULTS=full $(CARGO) test -p rollcalld $(addprefix --test ,$(FAULT_TESTS)) -- --nocapture 2>&1 \
	  | tee target/faults.log; test $${PIPESTATUS[0]} -eq 0
	@echo; echo "== fault figures"; grep -h '^FAULT' target/faults.log || true

# Each fuzz target for FUZZ_SECONDS (default 60), FUZZ_JOBS at a time; prints
# wall time and executions per target. Needs cargo-fuzz (installed when missing).
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 1
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) scripts/fuzz.sh

clean-data:
	rm -rf data/demo

# The Debian package (cargo-deb from crates.io, installed when missing), then
# a check of the file list, modes, conffile and dependencies.
deb-tool:
	@command -v cargo-deb >/dev/null || $(CARGO) install cargo-deb --locked
deb: deps-build deb-tool
	$(CARGO) deb -p rollcalld --output target/debian/
	scripts/deb-check.sh "$$(ls -t target/debian/rollcalld_*.deb | head -n1)"
