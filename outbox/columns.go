package outbox

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Reading a claimed row's columns.
//
// The relay scans each column into an untyped value and converts it here,
// so that a column of the wrong type or a NULL (a SQLite column holds any
// type unless its table is STRICT; a PostgreSQL table made by hand may
// allow NULLs) concerns that row alone, instead of being a scan error that
// fails every pass and holds back every row behind it:
//
//   - the event's own columns (id, name, payload): the row is corrupt, as
//     one whose payload does not decode (ErrDecode: attempted again after a
//     backoff, a dead letter after MaxAttempts);
//   - the relay's bookkeeping (attempts, next_at, held_for, handled): read
//     as their defaults (0, due, none), and written afresh by the relay's
//     next write to the row; the event is delivered;
//   - seq, the row's key: the row cannot be addressed; it is skipped and
//     reported, and the rows behind it go on.

// errColumn is why a row's event column could not be read as its type.
var errColumn = errors.New("a column holds a value of another type, or NULL")

// claimColumns is how many columns the claim query selects, in rowFrom's
// order: seq, id, name, payload, attempts, next_at, held_for, handled.
const claimColumns = 8

// rowFrom converts the values of one claimed row (see above). err is set
// when its seq cannot be read; bad, when an event column cannot.
func rowFrom(v *[claimColumns]any) (r row, err error) {
	if r.seq, err = intColumn(v[0]); err != nil {
		return row{}, fmt.Errorf("column seq: %w", err)
	}
	var bad []string
	check := func(col string, err error) {
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", col, err))
		}
	}
	r.id, err = textColumn(v[1], false)
	check("id", err)
	r.name, err = textColumn(v[2], false)
	check("name", err)
	r.payload, err = bytesColumn(v[3])
	check("payload", err)
	if bad != nil {
		r.bad = fmt.Errorf("%w: %s", errColumn, strings.Join(bad, "; "))
	}
	// Bookkeeping: a value that cannot be read is its default.
	if n, err := intColumn(v[4]); err == nil && n >= 0 && n <= math.MaxInt32 {
		r.attempts = int(n)
	}
	r.nextAt, _ = intColumn(v[5])
	r.heldFor, _ = textColumn(v[6], true)
	r.handled, _ = textColumn(v[7], true)
	return r, nil
}

// intColumn reads an integer column: an integer, a float without a
// fraction, or the decimal text of one.
func intColumn(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case int32:
		return int64(x), nil
	case int:
		return int64(x), nil
	case float64:
		if x == math.Trunc(x) && x >= math.MinInt64 && x < math.MaxInt64 {
			return int64(x), nil
		}
	case []byte:
		return parseInt(string(x))
	case string:
		return parseInt(x)
	case nil:
		return 0, errors.New("NULL")
	}
	return 0, fmt.Errorf("a value of type %T", v)
}

func parseInt(s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q, not an integer", truncate(s))
	}
	return n, nil
}

// textColumn reads a text column; NULL reads as "" where nullOK.
func textColumn(v any, nullOK bool) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case nil:
		if nullOK {
			return "", nil
		}
		return "", errors.New("NULL")
	}
	return "", fmt.Errorf("a value of type %T", v)
}

// bytesColumn reads the payload column: bytes or text (NULL reads as no
// bytes, which the codec then refuses or decodes as it does an empty
// payload).
func bytesColumn(v any) ([]byte, error) {
	switch x := v.(type) {
	case []byte:
		return x, nil
	case string:
		return []byte(x), nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("a value of type %T", v)
}

// truncate shortens s for an error message.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
