package natsbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamSettings describes the stream that [JetStreamConfig].Provision
// makes New create or update. Zero fields take the defaults in their
// comments.
//
// The stream's subjects are derived from the bridge: its subject prefix
// followed by each Outbound and Inbound pattern (a pattern another one
// covers is left out). When the stream exists, the bridge adds the subjects
// it lacks and keeps the others, so several bridges (a publisher and its
// consumers, say) may provision the same stream; Replicas, Duplicates and
// MaxAge are set to the values given (when non-zero); a Storage or
// Retention different from the stream's is refused with ErrConfig, since
// nats-server cannot change them.
type StreamSettings struct {
	// Replicas is the number of copies in a cluster (1, 3 or 5 are usual).
	// Default 1.
	Replicas int
	// Storage is jetstream.FileStorage (the default) or MemoryStorage.
	Storage jetstream.StorageType
	// Duplicates is the de-duplication window: a publish with a
	// Nats-Msg-Id seen within it is not stored again. It must cover the
	// publisher's PublishTimeout, and any outage the publisher rides out.
	// Default: the server's (2 minutes).
	Duplicates time.Duration
	// Retention is jetstream.LimitsPolicy (the default),
	// InterestPolicy or WorkQueuePolicy.
	Retention jetstream.RetentionPolicy
	// MaxAge bounds how long messages are kept. Default 0: forever.
	MaxAge time.Duration
}

// provisionStream creates or updates the stream for a bridge with the given
// subjects.
func provisionStream(ctx context.Context, js jetstream.JetStream, name string, set *StreamSettings, subjects []string) error {
	subjects = minimalSubjects(subjects)
	s, err := js.Stream(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		cfg := jetstream.StreamConfig{
			Name:       name,
			Subjects:   subjects,
			Replicas:   max(set.Replicas, 1),
			Storage:    set.Storage,
			Duplicates: set.Duplicates,
			Retention:  set.Retention,
			MaxAge:     set.MaxAge,
		}
		if _, err := js.CreateStream(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("natsbus: create stream %q: %w", name, err)
		} else if err != nil {
			// Another bridge created it meanwhile: update it instead.
			return provisionStream(ctx, js, name, set, subjects)
		}
		return nil
	case err != nil:
		return fmt.Errorf("natsbus: JetStream stream %q: %w", name, err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Storage != set.Storage {
		return configErr("stream %q has storage %v, Provision asks for %v", name, cfg.Storage, set.Storage)
	}
	if cfg.Retention != set.Retention {
		return configErr("stream %q has retention %v, Provision asks for %v", name, cfg.Retention, set.Retention)
	}
	changed := false
	want := minimalSubjects(append(slices.Clone(cfg.Subjects), subjects...))
	if !slices.Equal(want, cfg.Subjects) {
		cfg.Subjects, changed = want, true
	}
	if r := max(set.Replicas, 1); r != cfg.Replicas {
		cfg.Replicas, changed = r, true
	}
	if set.Duplicates != 0 && set.Duplicates != cfg.Duplicates {
		cfg.Duplicates, changed = set.Duplicates, true
	}
	if set.MaxAge != 0 && set.MaxAge != cfg.MaxAge {
		cfg.MaxAge, changed = set.MaxAge, true
	}
	if !changed {
		return nil
	}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("natsbus: update stream %q: %w", name, err)
	}
	return nil
}

// minimalSubjects drops duplicates and subjects another one covers, keeping
// the order of the first occurrences.
func minimalSubjects(subjects []string) []string {
	var out []string
	for i, s := range subjects {
		covered := false
		for j, o := range subjects {
			if i != j && coveredBy(s, o) && (!coveredBy(o, s) || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, s)
		}
	}
	return out
}

// bridgeSubjects returns the subjects of the bridge's patterns.
func (o *options) bridgeSubjects() []string {
	var out []string
	for _, p := range o.outbound {
		out = append(out, o.prefix+p)
	}
	for _, p := range o.inbound {
		out = append(out, o.prefix+p)
	}
	return out
}
