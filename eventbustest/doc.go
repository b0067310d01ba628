// Package eventbustest helps test code that uses an eventbus.EventManager
// without sleeping or polling.
//
//   - [NewManager] creates an EventManager for one test and closes it when
//     the test ends, failing the test if a delivery was abandoned or a
//     listener error was never taken by the test.
//   - [Record] registers a [Recorder], which keeps every event it receives
//     and waits, with a context, until it has seen what the test expects.
//   - [Manager.WaitHandled] waits until one listener, by handle or by name,
//     has handled n events (or [Manager.WaitHandledFor] a condition on them),
//     whatever the other listeners are doing.
//   - [WaitIdle] waits until the bus has no work left, follow-up events
//     included, using Flush rather than time.
//   - [FailFirst], [PanicFirst] and [Block] make listeners that fail, panic
//     or block on demand, to exercise retry, dead-letter and shutdown code.
//
// Helpers that take a testing.TB report failures through it: waits call
// t.Fatalf (so, like t.FailNow, they must be called from the goroutine
// running the test) and checks call t.Errorf. Contexts given to waits bound
// how long a test waits for something that does not happen; give them a
// deadline. No helper starts a goroutine.
//
// A Recorder is generic over the event data type and fed by any
// registration function, so it also records from a typed topic:
//
//	rec := eventbustest.NewRecorder(t, m, topic.Listen)
package eventbustest
