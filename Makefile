# Weir's front door. Each target works on a fresh Debian 12 machine and says
# what it does. The local stack (Redis, ClickHouse, Kafka, Python venv) lives in
# $(DATA); deploy/local/ has the scripts.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

DATA ?= $(or $(WEIR_DATA),$(CURDIR)/.weir)
export WEIR_DATA := $(DATA)

STATICCHECK_VERSION := v0.8.2
STATICCHECK := bin/staticcheck-$(STATICCHECK_VERSION)

# Extra flags for `weir dev` under make demo, e.g. DEMO_ARGS='--count 1000'.
DEMO_ARGS ?=

.PHONY: setup build demo test test-short soak lint bench bench-processors bench-processors-demo bench-featurestore clean stop

## setup: install and start Redis, ClickHouse, Kafka and the Python venv; write $(DATA)/env
setup:
	@bash deploy/local/setup.sh

## build: build bin/weir
build:
	@echo "==> go build -o bin/weir ./cmd/weir"
	@go build -o bin/weir ./cmd/weir

## demo: run the whole pipeline locally against the stack
demo: setup build
	@echo "==> bin/weir dev --config deploy/demo/weir.yaml --fresh $(DEMO_ARGS)"
	@. $(DATA)/env && bin/weir dev --config deploy/demo/weir.yaml --fresh $(DEMO_ARGS)

## test: every test, against the real services; a missing service fails
test: setup
	@echo "==> . $(DATA)/env && WEIR_REQUIRE_SERVICES=1 go test -count=1 -timeout 25m ./..."
	@. $(DATA)/env && WEIR_REQUIRE_SERVICES=1 go test -count=1 -timeout 25m ./...

## test-short: unit tests only, no services (integration tests skip)
test-short:
	@echo "==> go test -short ./..."
	@env -u WEIR_REDIS_ADDR -u WEIR_CLICKHOUSE_ADDR -u WEIR_KAFKA_BROKERS -u WEIR_PYTHON \
		-u WEIR_REQUIRE_SERVICES go test -short ./...

## soak: the processor's fault tests at full size on real Kafka: 1M events with 20 kill -9s, and a broker restart (restarts the shared broker: run nothing else beside it)
soak: setup
	@echo "==> . $(DATA)/env && WEIR_REQUIRE_SERVICES=1 WEIR_SOAK_EVENTS=1000000 WEIR_SOAK_KILLS=20 WEIR_SOAK_BROKER_RESTART=1 go test -count=1 -v -timeout 90m -run 'TestKillNine|TestBrokerRestart' ./processors/faulttest/"
	@. $(DATA)/env && WEIR_REQUIRE_SERVICES=1 WEIR_SOAK_EVENTS=1000000 WEIR_SOAK_KILLS=20 WEIR_SOAK_BROKER_RESTART=1 \
		go test -count=1 -v -timeout 90m -run 'TestKillNine|TestBrokerRestart' ./processors/faulttest/

## bench-processors: Weir's processor vs Kafka Streams on real Kafka, issue 4's workload (5M events, 15 sliding-window features), exactly-once and at-least-once, CPU profile, latency (docs/benchmarks.md)
bench-processors: setup
	@echo "==> . $(DATA)/env && go run ./bench/processors $(BENCH_ARGS)"
	@. $(DATA)/env && go run ./bench/processors $(BENCH_ARGS)

## bench-processors-demo: the first version's comparison: the demo view card_activity over 1M events
bench-processors-demo: setup
	@echo "==> . $(DATA)/env && go run ./bench/processors -workload demo -guarantees exactly_once -profile '' -latency 0 $(BENCH_ARGS)"
	@. $(DATA)/env && go run ./bench/processors -workload demo -guarantees exactly_once -profile '' -latency 0 $(BENCH_ARGS)

## bench-featurestore: online serving on loopback, Weir's HTTP API and Go client vs Feast's feature server (own venv under $(DATA)/feast-venv), same Redis, same data, batches of 1, 10 and 100 entities (docs/benchmarks.md)
bench-featurestore: setup
	@echo "==> bash bench/featurestore/feast/venv.sh"
	@bash bench/featurestore/feast/venv.sh
	@echo "==> . $(DATA)/env && go run ./bench/featurestore $(BENCH_ARGS)"
	@. $(DATA)/env && go run ./bench/featurestore $(BENCH_ARGS)

## lint: gofmt, go vet and staticcheck
lint: $(STATICCHECK)
	@echo "==> gofmt -l ."
	@out=$$(gofmt -l .); if [[ -n $$out ]]; then echo "not gofmt'd:"; echo "$$out"; exit 1; fi
	@echo "==> go vet ./..."
	@go vet ./...
	@echo "==> staticcheck ./..."
	@$(STATICCHECK) ./...

$(STATICCHECK):
	@echo "==> go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) into bin/"
	@GOBIN=$(CURDIR)/bin go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@mv bin/staticcheck $@

## bench: every benchmark, with allocations
bench:
	@echo "==> go test -run '^$$' -bench . -benchmem ./..."
	@go test -run '^$$' -bench . -benchmem ./...

.PHONY: bench-materialize
## bench-materialize: materializer throughput from a real features topic into ClickHouse and Redis (rows/s, rows/s per writer core), and produce-to-served freshness at 10k events/s (docs/benchmarks.md)
bench-materialize: setup
	@echo "==> . $(DATA)/env && go run ./bench/materialize $(BENCH_ARGS)"
	@. $(DATA)/env && go run ./bench/materialize $(BENCH_ARGS)

.PHONY: bench-scoring
## bench-scoring: Weir's XGBoost evaluator vs XGBoost's C library (through its Python package) and the Go library leaves, same model and rows, single-row calls and batches (docs/benchmarks.md), then the inline scorer hook with and without a Redis lookup per event (needs the Python venv; Redis from make setup for the second part, skipped without it)
bench-scoring:
	@bash deploy/local/pyenv.sh install
	@echo "==> cd bench/scoring && go run . -python $(DATA)/venv/bin/python $(BENCH_ARGS)"
	@cd bench/scoring && go run . -python $(DATA)/venv/bin/python $(BENCH_ARGS)

.PHONY: bench-trainingset
## bench-trainingset: training set, 1M-row spine x 3 views x 10 features: `weir training-set` (ClickHouse) vs Feast's get_historical_features (duckdb offline store over Parquet exports of the same rows), checked cell for cell first; seconds and peak RSS, 3 runs alternated (docs/benchmarks.md)
bench-trainingset: setup
	@echo "==> bash bench/featurestore/feast/venv.sh"
	@bash bench/featurestore/feast/venv.sh
	@echo "==> . $(DATA)/env && go run ./bench/trainingset $(BENCH_ARGS)"
	@. $(DATA)/env && go run ./bench/trainingset $(BENCH_ARGS)

## stop: stop the local stack (its data stays in $(DATA))
stop:
	@bash deploy/local/stop.sh

## clean: stop the stack, remove its data and bin/
clean: stop
	@echo "==> rm -rf $(DATA) bin/"
	@rm -rf $(DATA) bin/
