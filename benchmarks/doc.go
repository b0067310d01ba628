// Package benchmarks compares eventbus side by side with other in-process
// event buses for Go and with two baselines: a direct function call and a
// plain buffered channel feeding GOMAXPROCS worker goroutines.
//
// It is a separate module, so that the peers it measures never appear in
// the requirements of the eventbus module itself. Every library sits behind
// the small emitter adapter defined in adapter_test.go, built by one
// constructor file per library; scenario_bench_test.go runs each scenario
// with one sub-benchmark per library. See BENCHMARKS.md at the repository
// root for how to run them and for the results.
//
// The package has no exported API: everything lives in _test.go files,
// except cmd/benchchart, which turns `go test -bench` output into an SVG
// bar chart.
package benchmarks
