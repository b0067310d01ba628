package eventbus

import "github.com/eventbus-go/eventbus/internal/registry"

// RouteCacheSize is how many names' routes the wildcard route cache holds
// (tests only).
const RouteCacheSize = registry.RouteCacheSize
