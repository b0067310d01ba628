// Command orders-outbox is an order service that stores each order and emits
// order.created through a transactional outbox, in one SQLite transaction.
// One payment in four is declined: that transaction rolls back. Billing
// listens to order.created, slowly.
//
// The program runs the service twice, in child processes, on one database
// file. The first run places orders 1 to 25 and kills itself with SIGKILL
// right after committing order 25, while billing is still behind. The second
// run starts the outbox again, which delivers what the first one left, places
// orders 26 to 40, and waits for billing. Then it checks that every committed
// order was billed, and that no declined (rolled-back) order was: it exits
// with status 1 otherwise.
//
//	go run .
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/eventbus-go/eventbus"
	"github.com/eventbus-go/eventbus/outbox"
	_ "modernc.org/sqlite"
)

// OrderCreated is the event.
type OrderCreated struct {
	OrderID int     `json:"order_id"`
	Total   float64 `json:"total"`
}

const (
	dbEnv    = "ORDERS_OUTBOX_DB"
	phaseEnv = "ORDERS_OUTBOX_PHASE"
	orders   = 40 // placed in all
	killAt   = 25 // the first run dies right after committing this order
)

func main() {
	if path := os.Getenv(dbEnv); path != "" {
		phase, _ := strconv.Atoi(os.Getenv(phaseEnv))
		if err := service(path, phase); err != nil {
			log.Fatal(err)
		}
		return
	}
	os.Exit(supervise())
}

// supervise runs the service twice, as the first run dies.
func supervise() int {
	dir, err := os.MkdirTemp("", "orders-outbox-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "orders.db")
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	for phase := 1; phase <= 2; phase++ {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), dbEnv+"="+path, phaseEnv+"="+strconv.Itoa(phase))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case phase == 1 && errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL:
			fmt.Println("supervisor: the order service was killed (SIGKILL); restarting it")
		case phase == 1:
			fmt.Printf("supervisor: the first run should have been killed, got %v\n", err)
			return 1
		case err != nil:
			fmt.Printf("supervisor: second run: %v\n", err)
			return 1
		}
	}
	return 0
}

func service(path string, phase int) error {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, total REAL NOT NULL)",
		// Billing is idempotent: one row per event ID, whatever the redeliveries.
		"CREATE TABLE IF NOT EXISTS billing (event_id TEXT PRIMARY KEY, order_id INTEGER NOT NULL)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}

	m := eventbus.New[any]()
	created, err := eventbus.NewTopic[OrderCreated](m, "order.created")
	if err != nil {
		return err
	}
	_, err = created.Listen(func(ctx context.Context, e eventbus.Event[OrderCreated]) error {
		time.Sleep(5 * time.Millisecond) // the payment provider is slow
		id, _ := outbox.EventID(ctx)
		_, err := db.ExecContext(ctx, "INSERT INTO billing (event_id, order_id) VALUES (?, ?) ON CONFLICT DO NOTHING", id, e.Data.OrderID)
		return err
	})
	if err != nil {
		return err
	}
	// Listeners first, then the outbox: it delivers what the last run left.
	ob, err := outbox.New(ctx, db, m)
	if err != nil {
		return err
	}

	first, last := 1, killAt
	if phase == 2 {
		first, last = killAt+1, orders
		fmt.Printf("run 2: restarted; %d committed orders were not billed yet\n", unbilled(db))
	}
	for id := first; id <= last; id++ {
		if err := placeOrder(ctx, db, ob, id); err != nil {
			return err
		}
		if phase == 1 && id == killAt {
			fmt.Printf("run 1: placed orders 1-%d, %d committed orders not billed yet; killing myself\n", killAt, unbilled(db))
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // never reached
		}
	}
	if err := ob.Flush(ctx); err != nil {
		return err
	}
	if err := ob.Close(ctx); err != nil {
		return err
	}
	if err := m.Close(ctx); err != nil {
		return err
	}
	return report(db)
}

// placeOrder stores the order and emits order.created in one transaction;
// a declined payment rolls both back.
func placeOrder(ctx context.Context, db *sql.DB, ob *outbox.Outbox[any], id int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	total := float64(10 * id)
	if _, err := tx.ExecContext(ctx, "INSERT INTO orders (id, total) VALUES (?, ?)", id, total); err != nil {
		return err
	}
	if err := ob.Emit(ctx, tx, "order.created", OrderCreated{OrderID: id, Total: total}); err != nil {
		return err
	}
	if id%4 == 0 {
		return tx.Rollback() // payment declined: no order, no event
	}
	return tx.Commit()
}

func unbilled(db *sql.DB) int {
	var n int
	_ = db.QueryRow("SELECT COUNT(*) FROM orders WHERE id NOT IN (SELECT order_id FROM billing)").Scan(&n)
	return n
}

func report(db *sql.DB) error {
	var committed, billed, billings, unbilledN, phantom int
	for _, q := range []struct {
		sql string
		v   *int
	}{
		{"SELECT COUNT(*) FROM orders", &committed},
		{"SELECT COUNT(DISTINCT order_id) FROM billing", &billed},
		{"SELECT COUNT(*) FROM billing", &billings},
		{"SELECT COUNT(*) FROM orders WHERE id NOT IN (SELECT order_id FROM billing)", &unbilledN},
		{"SELECT COUNT(*) FROM billing WHERE order_id NOT IN (SELECT id FROM orders)", &phantom},
	} {
		if err := db.QueryRow(q.sql).Scan(q.v); err != nil {
			return err
		}
	}
	declined := orders / 4
	fmt.Printf("run 2: %d orders placed, %d declined (rolled back), %d committed\n", orders, declined, committed)
	fmt.Printf("run 2: %d committed orders billed (%d billing rows, one per event ID), %d not billed, %d declined orders billed\n",
		billed, billings, unbilledN, phantom)
	if committed != orders-declined || billed != committed || unbilledN != 0 || phantom != 0 {
		return errors.New("FAILED: every committed order must be billed, and no declined one")
	}
	fmt.Println("run 2: OK: every committed order was billed, no declined order was")
	return nil
}
