package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/outbox"
)

type OrderCreated struct {
	ID    int     `json:"id"`
	Total float64 `json:"total"`
}

// An order and its event are written in one transaction: billing sees the
// order if and only if the transaction commits.
func Example() {
	dir, _ := os.MkdirTemp("", "outbox-example-")
	defer os.RemoveAll(dir)
	db, _ := sql.Open("sqlite", "file:"+filepath.Join(dir, "shop.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	defer db.Close()
	ctx := context.Background()
	_, _ = db.Exec("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")

	m := eventbus.New[any]()
	defer m.Close(ctx)
	created, _ := eventbus.NewTopic[OrderCreated](m, "order.created")
	_, _ = created.Listen(func(ctx context.Context, e eventbus.Event[OrderCreated]) error {
		_, ok := outbox.EventID(ctx) // the same on every redelivery: bill once per ID
		fmt.Printf("billing order %d (%.2f), id: %v\n", e.Data.ID, e.Data.Total, ok)
		return nil
	})
	ob, err := outbox.New(ctx, db, m) // creates eventbus_outbox, delivers leftovers
	if err != nil {
		panic(err)
	}
	defer ob.Close(ctx)

	for id, commit := range []bool{true, false, true} {
		tx, _ := db.BeginTx(ctx, nil)
		_, _ = tx.Exec("INSERT INTO orders (id, total) VALUES (?, ?)", id, 9.5)
		if err := ob.Emit(ctx, tx, "order.created", OrderCreated{ID: id, Total: 9.5}); err != nil {
			panic(err)
		}
		if commit {
			_ = tx.Commit() // billed once committed, even if the process dies now
		} else {
			_ = tx.Rollback() // never billed
		}
	}
	_ = ob.Flush(ctx)
	// Output:
	// billing order 0 (9.50), id: true
	// billing order 2 (9.50), id: true
}
