package outbox

import "encoding/json"

// Codec turns event data into the payload stored in the table, and back.
// Implementations must be safe for concurrent use. Unmarshal receives a
// pointer to a zero value of the EventManager's type T or, for an
// EventManager[any], of the type eventbus.NewTopic declared for the event's
// name, if any.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default codec: encoding/json.
type JSON struct{}

// Marshal encodes v with [json.Marshal].
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes data with [json.Unmarshal].
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
