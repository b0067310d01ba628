package benchmarks

import "testing"

// directLibrary is the floor for synchronous delivery: Emit calls each
// handler in turn, with nothing between the emitter and the handlers but
// the adapter's own method call.
func directLibrary() library {
	return library{
		name: "direct",
		newSync: func(_ testing.TB, handlers []func(int)) emitter {
			return direct(handlers)
		},
	}
}

type direct []func(int)

func (d direct) Emit(seq int) error {
	for _, h := range d {
		h(seq)
	}
	return nil
}

func (direct) Close() error { return nil }
