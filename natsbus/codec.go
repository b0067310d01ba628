package natsbus

import "encoding/json"

// Codec turns event data into message payloads and back. Implementations
// must be safe for concurrent use. Unmarshal receives a pointer to a zero
// value of the bridge's event type or, for a bridge of an EventManager[any],
// of the type eventbus.NewTopic declared for the event's name, if any.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// ContentTyper may be implemented by a Codec to name its format; the value
// is sent in the Content-Type header.
type ContentTyper interface {
	ContentType() string
}

// JSON is the default codec: encoding/json, Content-Type application/json.
type JSON struct{}

// Marshal encodes v with [json.Marshal].
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes data with [json.Unmarshal].
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// ContentType returns "application/json".
func (JSON) ContentType() string { return "application/json" }
