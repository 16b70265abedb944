package main

import (
	"testing"

	"wit_component/weir"
)

func values(out weir.Output) []string {
	var vs []string
	for _, e := range weir.Unpack(out.Events) {
		vs = append(vs, string(e.Value))
	}
	return vs
}

func TestRejectsAnEmptyValue(t *testing.T) {
	if err := weir.InitWith(nil); err != nil {
		t.Fatal(err)
	}
	out := weir.ProcessBatch(weir.Pack([]weir.NewEvent{
		{Value: []byte("a"), Timestamp: weir.NoTimestamp},
		{Value: []byte(""), Timestamp: weir.NoTimestamp},
		{Value: []byte("DEBUG x"), Timestamp: weir.NoTimestamp},
	}))
	if got := values(out); len(got) != 1 || got[0] != "a" {
		t.Errorf("outputs %q", got)
	}
	if len(out.Counts) != 3 || out.Counts[0] != 1 || out.Counts[1] != 0 || out.Counts[2] != 0 {
		t.Errorf("counts %v", out.Counts)
	}
	if len(out.Failures) != 1 || out.Failures[0] != (weir.FailureOut{Index: 1, Kind: weir.KindReject, Reason: "empty value"}) {
		t.Errorf("failures %+v", out.Failures)
	}
}

func TestSettings(t *testing.T) {
	if err := weir.InitWith([][2]string{{"ignore-case", "true"}}); err != nil {
		t.Fatal(err)
	}
	out := weir.ProcessBatch(weir.Pack([]weir.NewEvent{
		{Value: []byte("Debug x"), Timestamp: weir.NoTimestamp},
		{Value: []byte("y"), Timestamp: weir.NoTimestamp},
	}))
	if got := values(out); len(got) != 1 || got[0] != "y" {
		t.Errorf("outputs %q", got)
	}
	if err := weir.InitWith([][2]string{{"ignore-case", "maybe"}}); err == nil {
		t.Error("a boolean that is not true or false is refused")
	}
}
