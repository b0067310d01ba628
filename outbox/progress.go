package outbox

import (
	"encoding/json"
	"slices"
	"strings"
)

// progress is how far an event's delivery has come, per listener, stored as
// JSON in its row's handled column so that a retry, a later pass or another
// process calls only the listeners still to do. Listeners are identified by
// their names (eventbus.Listener.Name): listeners sharing a name count as
// one, done when all of them returned nil in one attempt.
//
//	{"done":["billing","mail"],"dead":["mail"],"fails":{"audit":2}}
//
// done: the listeners that returned nil or were given up (dead: those given
// up, reported as dead letters); fails: the failed attempts of each listener
// still to do. An empty column (the rows of an older version) is nothing
// done.
type progress struct {
	Done  []string       `json:"done,omitempty"`
	Dead  []string       `json:"dead,omitempty"`
	Fails map[string]int `json:"fails,omitempty"`
}

// parseProgress reads a handled column. A column that is not such JSON is
// read as nothing done: every listener gets the event again (at least
// once), never none.
func parseProgress(s string) progress {
	var p progress
	if s == "" {
		return p
	}
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return progress{}
	}
	for n, k := range p.Fails {
		if k < 0 {
			p.Fails[n] = 0
		}
	}
	return p
}

// progressKey is how a listener's name is stored in progress: JSON holds
// valid UTF-8 only (json.Marshal writes U+FFFD for an invalid byte), so a
// name with invalid bytes is compared in the form it comes back in; it was
// never found done, and its events were delivered to it again and again.
func progressKey(name string) string { return strings.ToValidUTF8(name, "\uFFFD") }

func (p *progress) done(name string) bool { return slices.Contains(p.Done, progressKey(name)) }

// succeeded records name as done.
func (p *progress) succeeded(name string) {
	name = progressKey(name)
	if !p.done(name) {
		p.Done = append(p.Done, name)
	}
	delete(p.Fails, name)
}

// failed counts a failed attempt of name and returns the count.
func (p *progress) failed(name string) int {
	name = progressKey(name)
	if p.Fails == nil {
		p.Fails = map[string]int{}
	}
	p.Fails[name]++
	return p.Fails[name]
}

// gaveUp records name as done and dead.
func (p *progress) gaveUp(name string) {
	name = progressKey(name)
	p.succeeded(name)
	if !slices.Contains(p.Dead, name) {
		p.Dead = append(p.Dead, name)
	}
}

func (p *progress) String() string {
	if len(p.Done) == 0 && len(p.Dead) == 0 && len(p.Fails) == 0 {
		return ""
	}
	b, _ := json.Marshal(p) // strings and ints only: cannot fail
	return string(b)
}

// formatHeld stores the names of the ordered listeners that a row holds
// back (see Outbox), one per line, in its held_for column.
func formatHeld(names []string) string {
	return strings.Join(names, "\n")
}

// heldKey is how a listener's name is held back: its name with any newline
// made a space, as held_for stores it, and made storable (dbText).
func heldKey(name string) string { return dbText(strings.ReplaceAll(name, "\n", " ")) }

// dbText makes s storable in a text column of either database: PostgreSQL
// refuses a NUL byte or invalid UTF-8 in TEXT, and the statement's failure
// aborts the relay's pass, which then delivered its events again and again
// without ever counting the attempt (a listener error carrying such bytes
// was never given up on). Each such byte becomes U+FFFD.
func dbText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// parseHeld reads a held_for column. Older versions wrote "name\tpattern"
// lines: the name is what counts.
func parseHeld(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		name, _, _ := strings.Cut(line, "\t")
		out = append(out, name)
	}
	return out
}
