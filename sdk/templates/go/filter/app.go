// {{name}}: a weir stage that drops the events whose value contains a word.
//
// An event whose value is empty is rejected (the host dead-letters it with the reason);
// every other event passes through unchanged, or is filtered out when it contains the word.
package main

import (
	"bytes"
	"errors"

	"wit_component/weir"
)

var (
	word       []byte
	ignoreCase bool
)

func init() {
	weir.Register(weir.Stage{
		Name:    "{{name}}",
		Version: "0.1.0",
		Settings: []weir.Setting{
			{Name: "drop", Type: weir.Text, Default: "DEBUG", Help: "drop the events whose value contains this"},
			{Name: "ignore-case", Type: weir.Boolean, Default: false, Help: "match the word in any case"},
		},
		Init: func(s weir.Settings) error {
			word, ignoreCase = []byte(s.Text("drop")), s.Bool("ignore-case")
			if len(word) == 0 {
				return errors.New("`drop` must not be empty")
			}
			if ignoreCase {
				word = bytes.ToLower(word)
			}
			weir.Log(weir.Debug, "dropping events containing %q", s.Text("drop"))
			return nil
		},
		Process: process,
	})
}

func process(in *weir.Event, out *weir.Out) error {
	if len(in.Value) == 0 {
		return weir.Reject("empty value")
	}
	value := in.Value
	if ignoreCase {
		value = bytes.ToLower(value)
	}
	if bytes.Contains(value, word) {
		return nil // filtered out
	}
	out.Pass() // passed through as it is
	return nil
}
