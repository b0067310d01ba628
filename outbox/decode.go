package outbox

import (
	"fmt"
	"reflect"

	"github.com/eventbus-go/eventbus"
)

// decodeRow checks that a row's event columns could be read (columns.go)
// and its name, and decodes its payload: into the type that
// eventbus.NewTopic declared for the name, for an EventManager[any], or into
// T. It never panics: a panicking codec is an error matching ErrDecode.
func (o *Outbox[T]) decodeRow(r row) (v T, err error) {
	if r.bad != nil {
		return v, fmt.Errorf("%w: row %d: %w", ErrDecode, r.seq, r.bad)
	}
	if err := eventbus.ValidateName(r.name); err != nil {
		return v, fmt.Errorf("%w: row %d: %w", ErrDecode, r.seq, err)
	}
	return decodePayload[T](o.o.codec, o.m.DeclaredType(r.name), r.payload)
}

func decodePayload[T any](c Codec, typ reflect.Type, payload []byte) (v T, err error) {
	defer func() {
		if p := recover(); p != nil {
			var zero T
			v, err = zero, fmt.Errorf("%w: codec panicked: %v", ErrDecode, p)
		}
	}()
	if typ == nil {
		if err := c.Unmarshal(payload, &v); err != nil {
			return v, fmt.Errorf("%w: %w", ErrDecode, err)
		}
		return v, nil
	}
	p := reflect.New(typ)
	if err := c.Unmarshal(payload, p.Interface()); err != nil {
		return v, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	got := p.Elem().Interface()
	if got == nil { // a nil interface value: the zero T
		return v, nil
	}
	t, ok := got.(T)
	if !ok {
		return v, fmt.Errorf("%w: %v is not the EventManager's type", ErrDecode, typ)
	}
	return t, nil
}
