//go:build !eventbuscore

package benchmarks

// TEMPORARY until the core compiles.
func eventbusLibrary() library { return library{name: "eventbus"} }
