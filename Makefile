MODULE_DIRS = . natsbus benchmarks examples/orders-nats

.PHONY: test lint bench
# The test command of the README: every module, under the race detector.
test:
	@set -e; for d in $(MODULE_DIRS); do echo "== $$d"; (cd $$d && go test -race -count=1 ./...); done
	cd benchmarks && go test -run '^$$' -bench . -benchtime=1x ./...

lint:
	@set -e; test -z "$$(gofmt -l .)" || { gofmt -l .; exit 1; }
	@set -e; for d in $(MODULE_DIRS); do (cd $$d && go vet ./... && go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...); done

bench:
	go test -run '^$$' -bench . -benchmem -count 6 . | tee bench.txt
