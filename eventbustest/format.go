package eventbustest

import (
	"fmt"
	"strings"

	"github.com/eventbus-go/eventbus"
)

// _listMax bounds how many events or errors a failure message lists.
const _listMax = 100

// listEvents describes recorded events for a failure message.
func listEvents[T any](events []eventbus.Event[T]) string {
	var b strings.Builder
	fmt.Fprintf(&b, "recorded %d events", len(events))
	for i, e := range events {
		if i == _listMax {
			fmt.Fprintf(&b, "\n\t... and %d more", len(events)-_listMax)
			break
		}
		fmt.Fprintf(&b, "\n\t%d: %s %+v", i, e.Name, e.Data)
	}
	return b.String()
}

// listErrors describes listener errors for a failure message.
func listErrors(errs []error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d errors", len(errs))
	for i, err := range errs {
		if i == _listMax {
			fmt.Fprintf(&b, "\n\t... and %d more", len(errs)-_listMax)
			break
		}
		fmt.Fprintf(&b, "\n\t%d: %v", i, err)
	}
	return b.String()
}
