package eventbus

// RouteCacheSize is how many names' routes the wildcard route cache holds
// (tests only).
const RouteCacheSize = _routeCacheSize
