package sched

import (
	"context"
	"fmt"
	"testing"
)

// Close returns only after every worker's last step: none of s's workers is
// still registered as one (striking itself off is among a worker's last
// steps) when Close returns, round after round.
func TestCloseReturnsAfterEveryWorkersLastStep(t *testing.T) {
	for round := range 200 {
		s := New[ev, tag](Options{Workers: 4, QueueSize: 64, Report: func(error) {}, CheckInvariants: true})
		var to []*Inbox[ev, tag]
		for i := range 4 {
			to = append(to, s.NewInbox(newFake(fmt.Sprint("l", i)), Config{Name: fmt.Sprint("l", i)}))
		}
		for i := range 40 {
			if err := s.Accept(context.Background(), to[i%4:i%4+1], ev{id: i}, nil, nil, true); err != nil {
				t.Fatal(err)
			}
		}
		s.SetClosed()
		if _, _, err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		workerGoroutines.Range(func(id, owner any) bool {
			if owner == any(s) {
				t.Fatalf("round %d: worker goroutine %v of the pool still running its last steps after Close returned", round, id)
			}
			return true
		})
	}
}
