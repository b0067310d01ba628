package otelbus

// ListenerName is the name telemetry gives a listener, before mapping.
var ListenerName = listenerName
