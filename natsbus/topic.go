package natsbus

import (
	"fmt"
	"reflect"
)

// Typed topics. A bridge of an EventManager[any] decodes an inbound payload
// into the type that eventbus.NewTopic declared for its event name, so the
// topic's listeners get their type, as for a local emit, rather than what
// the codec makes of an any (a map[string]any for JSON). Names that are not
// declared decode into T, as before.

// decodeFor decodes data into v for the event name: into the type declared
// for name when there is one, otherwise into T.
func (b *Bridge[T]) decodeFor(name string, data []byte, v *T) error {
	typ := b.m.DeclaredType(name)
	if typ == nil {
		return b.decode(data, v)
	}
	p := reflect.New(typ)
	if err := b.decode(data, p.Interface()); err != nil {
		return err
	}
	got := p.Elem().Interface()
	if got == nil { // a nil interface value: the zero T
		var zero T
		*v = zero
		return nil
	}
	t, ok := got.(T)
	if !ok { // cannot happen: only an EventManager[any] declares types
		return fmt.Errorf("%w: %s is not a %s", ErrDecode, typ, reflect.TypeFor[T]())
	}
	*v = t
	return nil
}
