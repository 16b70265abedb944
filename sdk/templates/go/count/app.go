// {{name}}: a weir stage that counts events per key in the host's keyed state.
//
// Each event adds one to the counter of its key (of its value, when it has no key) and
// becomes the event `KEY,N`, N the key's count so far, keeping the input's key, headers and
// timestamp. The first event of a key sets an event-time timer at the end of time, which
// fires when the input ends (in a pipeline whose events carry event time): the stage then
// emits `KEY,N,final`, the key's final count. The counts live in the host, not in this
// instance: they survive the instance being replaced, and count each event once.
package main

import (
	"encoding/binary"
	"strconv"

	"wit_component/weir"
)

func init() {
	weir.Register(weir.Stage{
		Name:    "{{name}}",
		Version: "0.1.0",
		Process: process,
		OnTimer: onTimer,
	})
}

func process(in *weir.Event, out *weir.Out) error {
	key, ok := in.Key()
	if !ok {
		key = in.Value
	}
	count, err := weir.State.Increment(key, 1)
	if err != nil {
		return err // a *weir.StateError: the event fails, nothing was written
	}
	if count == 1 {
		if err := weir.Time.SetTimer(weir.Timer{Key: key, At: weir.EndOfTime, Clock: weir.EventTime}); err != nil {
			// The count landed; only the final line is lost. Say so rather than fail.
			weir.Log(weir.Warn, "no final count for a key: %v", err)
		}
	}
	out.Emit(strconv.AppendInt(append(append([]byte(nil), key...), ','), count, 10))
	return nil
}

func onTimer(fired []weir.Timer, out *weir.Out) {
	for _, t := range fired {
		value, ok := weir.State.Get(t.Key)
		if !ok || len(value) != 8 {
			continue
		}
		line := strconv.AppendInt(append(append([]byte(nil), t.Key...), ','), int64(binary.LittleEndian.Uint64(value)), 10)
		out.Emit(append(line, ",final"...))
	}
}
