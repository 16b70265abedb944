// label: a weir stage, in Go, that labels each parsed sshd line (the JSON object sshd-parse
// writes) with what kind of message it is: `failed-password`, `invalid-user`, `accepted`,
// `disconnect`, `pam` or `break-in-attempt`, added as the field "event".
//
// Version 1 knows those six kinds only: any other message is rejected as unknown, and the
// host dead-letters it with the reason. (Version 2, ../label-v2, labels them `other`.)
package main

import (
	"bytes"

	"wit_component/weir"
)

func init() {
	weir.Register(weir.Stage{Name: "label", Version: "1.0.0", Process: process})
}

// The field sshd-parse writes last, and where its text starts.
var msgField = []byte(`,"msg":"`)

// message is the text of the object's `msg` field as it is written (escapes left in: no
// marker below holds a character JSON escapes), or false when the value is not an object
// that ends with it.
func message(value []byte) ([]byte, bool) {
	at := bytes.LastIndex(value, msgField)
	if at < 0 || !bytes.HasSuffix(value, []byte(`"}`)) || len(value) < at+len(msgField)+2 {
		return nil, false
	}
	return value[at+len(msgField) : len(value)-2], true
}

// labelled is the object with `"event":KIND` added as its last field.
func labelled(value []byte, kind string) []byte {
	out := make([]byte, 0, len(value)+len(kind)+12)
	out = append(out, value[:len(value)-1]...)
	out = append(out, `,"event":"`...)
	out = append(out, kind...)
	return append(out, `"}`...)
}

// kinds: the first whose marker the message holds names it.
var kinds = []struct{ marker, kind string }{
	{"Failed password", "failed-password"},
	{"Invalid user", "invalid-user"},
	{"invalid user", "invalid-user"},
	{"Accepted", "accepted"},
	{"Received disconnect", "disconnect"},
	{"Disconnecting", "disconnect"},
	{"Connection closed", "disconnect"},
	{"pam_unix", "pam"},
	{"reverse mapping", "break-in-attempt"},
	{"POSSIBLE BREAK-IN", "break-in-attempt"},
}

func process(in *weir.Event, out *weir.Out) error {
	msg, ok := message(in.Value)
	if !ok {
		return weir.Reject("not a parsed sshd line")
	}
	for _, k := range kinds {
		if bytes.Contains(msg, []byte(k.marker)) {
			out.Emit(labelled(in.Value, k.kind))
			return nil
		}
	}
	return weir.Reject("unknown message: " + string(msg))
}
