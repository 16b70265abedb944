// count-by-address: a weir stage, in Go, that numbers each address's failed attempts in the
// host's keyed state.
//
// Each event is a JSON object keyed by an address (as user-and-address writes it); the stage
// adds one to the address's counter and writes the object back with `"attempt":N`, N the
// address's count so far. The counts live in the host, not in this instance: they survive the
// instance being replaced, and count each event once. An event without a key, or whose value
// is not an object, is rejected.
package main

import (
	"bytes"
	"strconv"

	"wit_component/weir"
)

func init() {
	weir.Register(weir.Stage{
		Name:    "count-by-address",
		Version: "0.1.0",
		Process: process,
	})
}

func process(in *weir.Event, out *weir.Out) error {
	address, ok := in.Key()
	if !ok {
		return weir.Reject("no key: the address is the key")
	}
	object := bytes.TrimRight(in.Value, " \n")
	if len(object) < 2 || object[0] != '{' || object[len(object)-1] != '}' {
		return weir.Reject("the value is not a JSON object")
	}
	count, err := weir.State.Increment(address, 1)
	if err != nil {
		return err // a *weir.StateError: the event fails, nothing was written
	}
	line := append([]byte(nil), object[:len(object)-1]...)
	line = append(line, `,"attempt":`...)
	line = strconv.AppendInt(line, count, 10)
	out.Emit(append(line, '}'))
	return nil
}
