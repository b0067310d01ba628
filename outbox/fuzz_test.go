package outbox

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/eventbus-go/eventbus"
)

type fuzzOrder struct {
	ID    int64             `json:"id"`
	Items []string          `json:"items"`
	Meta  map[string]string `json:"meta"`
}

// FuzzDecodeRow feeds arbitrary names and payloads, as a corrupt or hostile
// table could hold them, to the relay's decoding: for an EventManager of a
// struct type, and for an EventManager[any] with a topic declared. It must
// never panic; a refusal must match ErrDecode; an accepted row must have a
// valid name, and a decoded struct must survive encoding and decoding again.
func FuzzDecodeRow(f *testing.F) {
	for _, seed := range []struct {
		name    string
		payload string
	}{
		{"order.created", `{"id":1,"items":["a"],"meta":{"k":"v"}}`},
		{"order.created", `null`},
		{"order.created", `{"id":"x"}`},
		{"order.created", `{"id":1e400}`},
		{"order.created", ``},
		{"order.created", `[`},
		{"other.event", `{"a":[1,2,{"b":null}]}`},
		{"order..created", `{}`},
		{"order.*", `{}`},
		{"", `{}`},
		{"order created", `{}`},
		{"ordér.créé", `"\u0000"`},
	} {
		f.Add(seed.name, []byte(seed.payload))
	}
	typed := &Outbox[fuzzOrder]{m: eventbus.New[fuzzOrder](), o: defaultOptions()}
	m := eventbus.New[any]()
	if _, err := eventbus.NewTopic[fuzzOrder](m, "order.created"); err != nil {
		f.Fatal(err)
	}
	untyped := &Outbox[any]{m: m, o: defaultOptions()}
	f.Fuzz(func(t *testing.T, name string, payload []byte) {
		r := row{seq: 1, id: "id", name: name, payload: payload}
		v, err := typed.decodeRow(r)
		check(t, name, err)
		if err == nil {
			p, err := typed.encode(v)
			if err != nil {
				t.Fatalf("decoded %#v does not encode: %v", v, err)
			}
			again, err := typed.decodeRow(row{name: name, payload: p})
			if err != nil || !reflect.DeepEqual(normal(v), normal(again)) {
				t.Fatalf("round trip: %#v -> %s -> %#v, %v", v, p, again, err)
			}
		}
		a, err := untyped.decodeRow(r)
		check(t, name, err)
		if err == nil && name == "order.created" && a != nil {
			if _, ok := a.(fuzzOrder); !ok {
				t.Fatalf("a declared topic decoded into %T", a)
			}
		}
	})
}

func check(t *testing.T, name string, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, ErrDecode) {
		t.Fatalf("error not matching ErrDecode: %v", err)
	}
	if err == nil && eventbus.ValidateName(name) != nil {
		t.Fatalf("invalid name %q accepted", name)
	}
}

// normal treats nil and empty slices and maps alike: JSON keeps the
// difference only one way.
func normal(o fuzzOrder) fuzzOrder {
	if len(o.Items) == 0 {
		o.Items = nil
	}
	if len(o.Meta) == 0 {
		o.Meta = nil
	}
	return o
}

// FuzzProgressColumns feeds arbitrary handled and held_for columns, as a
// corrupt or hostile table could hold them, to the relay's reading of them:
// it must never panic, never count a negative failure, and what it reads
// must be written back and read again unchanged.
func FuzzProgressColumns(f *testing.F) {
	for _, seed := range []struct{ handled, held string }{
		{"", ""},
		{`{"done":["ok"],"fails":{"flaky":1}}`, "flaky"},
		{`{"done":["a","b"],"dead":["b"]}`, "a\tpattern\nb"},
		{`{"fails":{"x":-3}}`, "\n\n"},
		{`{"fails":{"x":1e40}}`, "x"},
		{`{"done":[null,"\u0000"]}`, "\t"},
		{`[1,2]`, ""},
		{`{`, ""},
		{`null`, ""},
	} {
		f.Add(seed.handled, seed.held)
	}
	f.Fuzz(func(t *testing.T, handled, held string) {
		p := parseProgress(handled)
		for n, k := range p.Fails {
			if k < 0 {
				t.Fatalf("negative failures for %q: %d", n, k)
			}
		}
		again := parseProgress(p.String())
		if !reflect.DeepEqual(normalProgress(p), normalProgress(again)) {
			t.Fatalf("round trip: %#v -> %s -> %#v", p, p.String(), again)
		}
		names := parseHeld(held)
		for _, n := range names {
			if heldKey(n) != n && !strings.Contains(n, "\n") {
				t.Fatalf("heldKey changed %q", n)
			}
		}
		var keys []string
		for _, n := range names {
			keys = append(keys, heldKey(n))
		}
		if back := parseHeld(formatHeld(keys)); formatHeld(keys) != "" && !reflect.DeepEqual(back, keys) {
			t.Fatalf("held_for round trip: %q -> %q", keys, back)
		}
	})
}

func normalProgress(p progress) progress {
	if len(p.Done) == 0 {
		p.Done = nil
	}
	if len(p.Dead) == 0 {
		p.Dead = nil
	}
	if len(p.Fails) == 0 {
		p.Fails = nil
	}
	return p
}

// FuzzRowColumns feeds the relay's reading of a claimed row (rowFrom) every
// mix of NULLs, integers, texts, bytes and floats a table could hand it, as
// a SQLite table (any type in any column) or a PostgreSQL table made by hand
// (NULLs) could. It must never panic; a row whose seq cannot be read is
// refused; otherwise the row is corrupt (bad, matching errColumn, and
// decodeRow's error matching ErrDecode) exactly when id, name or payload
// cannot be read, and never because of a bookkeeping column.
func FuzzRowColumns(f *testing.F) {
	f.Add(uint32(0x5555_5555), int64(1), "o.c", []byte(`{}`), 1.5)
	f.Add(uint32(0), int64(-1), "", []byte(nil), 0.0)
	f.Add(uint32(0xaaaa_aaaa), int64(1<<40), "many", []byte("7"), 1e300)
	f.Add(uint32(0xffff_ffff), int64(0), " 12 ", []byte{0xff, 0}, math.Copysign(0, -1))
	f.Fuzz(func(t *testing.T, kinds uint32, n int64, s string, b []byte, x float64) {
		var v [claimColumns]any
		for i := range v {
			switch (kinds >> (4 * i)) & 7 { // a kind per column
			case 0:
				v[i] = nil
			case 1:
				v[i] = n
			case 2:
				v[i] = s
			case 3:
				v[i] = b
			case 4:
				v[i] = x
			case 5:
				v[i] = true
			default:
				v[i] = n + int64(i)
			}
		}
		r, err := rowFrom(&v)
		if _, seqErr := intColumn(v[0]); (err != nil) != (seqErr != nil) {
			t.Fatalf("seq %#v: rowFrom's error %v, intColumn's %v", v[0], err, seqErr)
		}
		if err != nil {
			return
		}
		readable := func(v any, bytes bool) bool {
			switch v.(type) {
			case string, []byte:
				return true
			case int64:
				return !bytes
			case nil:
				return bytes
			}
			return false
		}
		wantBad := !readable(v[1], false) || !readable(v[2], false) || !readable(v[3], true)
		if (r.bad != nil) != wantBad {
			t.Fatalf("columns %#v: bad %v, want bad %v", v, r.bad, wantBad)
		}
		if r.bad == nil {
			return
		}
		if !errors.Is(r.bad, errColumn) {
			t.Fatalf("bad %v does not match errColumn", r.bad)
		}
		o := &Outbox[fuzzOrder]{m: eventbus.New[fuzzOrder](), o: defaultOptions()}
		if _, err := o.decodeRow(r); !errors.Is(err, ErrDecode) {
			t.Fatalf("decodeRow of a corrupt row: %v", err)
		}
	})
}
