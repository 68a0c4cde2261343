# The project's commands. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test unit env-up env-down env-status env-build crds lint bench demo chaos image

## test: build and start the test environment (cached), then run every test
test: env-up
	$(CARGO) test --workspace --no-fail-fast

## unit: the tests that need no environment (pure logic, golden files, model checking)
unit:
	$(CARGO) test --workspace --lib
	$(CARGO) test -p failover-messages --tests

## env-build: build the Kubernetes binaries, etcd, kwok, toxiproxy and the moto venv into the cache
env-build:
	bash tests/env/build.sh

## env-up: start (or reuse) moto, toxiproxy and the east/west clusters; writes target/testenv/env.sh
env-up:
	bash tests/env/up.sh

## env-down: stop what env-up started
env-down:
	bash tests/env/down.sh

## demo: start the environment and agents, fail shop/shop over east -> west (stays running; stop: bash tests/env/demo-down.sh)
demo:
	bash tests/env/demo.sh

## env-status: show what of the environment runs
env-status:
	bash tests/env/status.sh

## image: release build of failover-agent packaged as an OCI image on no base image (umoci): target/image/oci and target/image/failover-agent.tar
image:
	bash deploy/image/build.sh

## crds: regenerate deploy/crds/ (and the chart's copy) from the Rust types
crds:
	$(CARGO) run -q -p failover-messages --example crdgen
	cp deploy/crds/*.yaml deploy/helm/failover-agent/crds/

lint:
	$(CARGO) clippy --workspace --all-targets

## bench: release build, start the environment, then every design §7 figure (handoff latency, orchestration overhead, AWS calls per failover, 50 groups at once, agent RSS); writes target/bench/report.md
bench: env-up
	$(CARGO) build --release --workspace --bins
	$(CARGO) run --release -p failover-tests --bin failover-bench -- all --out target/bench/report.md

## chaos: start the environment, then OPS seeded failovers of two groups under random faults (SEED: default from the clock, printed); writes target/chaos/report.md, exits non-zero on a violation
SEED ?=
OPS ?= 20
chaos: env-up
	$(CARGO) build --workspace --all-targets
	@seed="$(SEED)"; "$${CARGO_TARGET_DIR:-target}/debug/failover-chaos" $${seed:+--seed "$$seed"} \
	  --ops "$(OPS)" --out target/chaos/report.md
