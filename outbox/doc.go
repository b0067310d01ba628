// Package outbox delivers events of an [eventbus.EventManager] if and only if
// the database transaction that emitted them commits, and survives crashes:
// a transactional outbox for the in-process bus.
//
// [Outbox.Emit] writes the event into a table in the caller's *sql.Tx and
// nothing else. If the transaction rolls back, no listener ever sees the event.
// Once it commits, a relay goroutine started by [New] reads the row and
// delivers it to each listener of its name on the EventManager, one at a
// time with EventManager.EmitSyncTo, and deletes the row once every listener
// has returned nil (or been given up on after MaxAttempts: a dead letter).
// A listener that fails (error or panic) is attempted again later, alone:
// the listeners that succeeded are not called again. A crash of the process
// at any moment means the event is delivered again, to the listeners that
// had not yet succeeded as far as the table recorded: delivery is at least
// once per listener, and [EventID] gives each listener the event's stable ID
// to be idempotent.
//
// Relaying is fast within the process (the relay polls with a short, growing
// interval after each Emit, and on PostgreSQL with pgx it is woken by
// LISTEN/NOTIFY at every commit, from any process), and falls back to polling
// for events committed by other processes.
//
// Two databases are supported through database/sql: SQLite (for instance
// modernc.org/sqlite, pure Go) and PostgreSQL (github.com/jackc/pgx/v5/stdlib
// for LISTEN/NOTIFY; any other PostgreSQL driver relays by polling). The
// README of this module gives the guarantees in one table, and the figures.
package outbox
