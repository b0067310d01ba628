package outbox

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
)

// errNoListen: the driver is not pgx's stdlib, LISTEN is not available; the
// relay polls (hot polling after each Emit of this process, PollInterval for
// the others).
var errNoListen = errors.New("outbox: the PostgreSQL driver is not pgx's stdlib: polling")

// listen holds one connection of the pool in LISTEN on the table's channel
// and wakes the relay at every notification, that is at every commit of a
// transaction that inserted rows into the table, in any process (the
// trigger made by New sends it). It reconnects with a backoff (100ms to 5s)
// when the connection is lost, reporting each failure; meanwhile Emit
// falls back to hot polling.
func (o *Outbox[T]) listen() {
	defer o.wg.Done()
	delay := 100 * time.Millisecond
	for {
		err := o.listenOnce()
		o.listening.Store(false)
		if o.stop.Err() != nil {
			return
		}
		if errors.Is(err, errNoListen) {
			return
		}
		o.o.onError(fmt.Errorf("outbox: LISTEN connection: %w", err))
		t := time.NewTimer(delay)
		select {
		case <-o.stop.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(delay*2, 5*time.Second)
	}
}

func (o *Outbox[T]) listenOnce() error {
	conn, err := o.db.Conn(o.stop)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return errNoListen
		}
		pc := sc.Conn()
		if _, err := pc.Exec(o.stop, "LISTEN "+strings.ToLower(o.o.table)); err != nil {
			return errors.Join(err, driver.ErrBadConn)
		}
		o.listening.Store(true)
		o.wakeNow() // whatever committed before LISTEN
		for {
			if _, err := pc.WaitForNotification(o.stop); err != nil {
				// The connection may be in the middle of a cancelled
				// read: never hand it back to the pool.
				return errors.Join(err, driver.ErrBadConn)
			}
			o.stats.notifications.Add(1)
			o.wakeNow()
		}
	})
}
