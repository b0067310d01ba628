package outbox

import (
	"errors"
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
