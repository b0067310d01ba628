# Test what the go.mod files say, whatever go.work a developer keeps.
export GOWORK = off

# Every module of the repository: each directory that holds a go.mod.
MODULE_DIRS = $(sort $(patsubst ./%,%,$(patsubst %/go.mod,%,$(shell find . -name go.mod -not -path './.git/*'))))

.PHONY: test lint bench
# The test command of the README: every module, under the race detector.
test:
	@set -e; for d in $(MODULE_DIRS); do echo "== $$d"; (cd $$d && go test -race -count=1 ./...); done
	@echo "== benchmark smoke run: every benchmark once (-benchtime=1x) to check that it runs; its figures mean nothing and are not shown (make bench measures)"
	@out=$$(go test -run '^$$' -bench . -benchtime=1x . 2>&1) || { echo "$$out"; exit 1; }
	@set -e; for d in benchmarks otelbus natsbus outbox; do out=$$(cd $$d && go test -run '^$$' -bench . -benchtime=1x ./... 2>&1) || { echo "$$out"; exit 1; }; done
	@out=$$(cd watermillbus && go test -run '^$$' -bench . -benchtime=1x . -args -flood.messages=10000 2>&1) || { echo "$$out"; exit 1; }
	@echo "ok   benchmark smoke run"
	@echo "== examples: orders, orders-watermill, orders-otel, orders-outbox"
	go run ./examples/orders >/dev/null
	cd examples/orders-watermill && go run . >/dev/null
	cd examples/orders-otel && go run . >/dev/null
	cd examples/orders-outbox && go run . >/dev/null

lint:
	@set -e; test -z "$$(gofmt -l .)" || { gofmt -l .; exit 1; }
	@! grep -rn 'eventbus-go/eventbus.* v0\.0\.0-00010101000000-000000000000' --include=go.mod . || { echo "a go.mod requires a placeholder version of a module of this repository"; exit 1; }
	@sh scripts/check-releasing.sh
	@set -e; for d in $(MODULE_DIRS); do (cd $$d && go vet ./... && go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...); done

BENCHSTAT = go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

# The root benchmarks, 6 runs, summarised by benchstat (about 3 minutes).
bench:
	go test -run '^$$' -bench . -benchmem -count 6 . | tee bench.txt
	$(BENCHSTAT) bench.txt
