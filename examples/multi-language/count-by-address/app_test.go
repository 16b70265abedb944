// The stage's golden test, run natively with `go test`: every line of golden/input.txt is
// an input event, `KEY<TAB>VALUE`, every line of golden/output.txt an output event's value,
// in order.
package main

import (
	"bytes"
	"os"
	"testing"

	"wit_component/weir"
)

func lines(t *testing.T, name string) [][]byte {
	data, err := os.ReadFile("golden/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
}

func TestGolden(t *testing.T) {
	weir.NativeReset()
	if err := weir.InitWith(nil); err != nil {
		t.Fatalf("init with the defaults: %v", err)
	}
	var inputs []weir.NewEvent
	for _, line := range lines(t, "input.txt") {
		key, value, _ := bytes.Cut(line, []byte("\t"))
		inputs = append(inputs, weir.NewEvent{Value: value, Key: key, HasKey: true, Timestamp: weir.NoTimestamp})
	}
	out := weir.ProcessBatch(weir.Pack(inputs))
	if len(out.Failures) != 0 || len(out.Counts) != 0 {
		t.Fatalf("failures %v, counts %v", out.Failures, out.Counts)
	}
	got := weir.Unpack(out.Events)
	want := lines(t, "output.txt")
	if len(got) != len(want) {
		t.Fatalf("%d outputs, want %d", len(got), len(want))
	}
	for j, e := range got {
		if !bytes.Equal(e.Value, want[j]) {
			t.Errorf("output %d is %q, want %q", j, e.Value, want[j])
		}
	}
}

func TestRejectsAnEventWithoutKey(t *testing.T) {
	weir.NativeReset()
	if err := weir.InitWith(nil); err != nil {
		t.Fatal(err)
	}
	out := weir.ProcessBatch(weir.Pack([]weir.NewEvent{{Value: []byte("{}"), Timestamp: weir.NoTimestamp}}))
	if len(out.Failures) != 1 {
		t.Fatalf("failures %v", out.Failures)
	}
}

func TestDescribe(t *testing.T) {
	if s := weir.Registered(); s.Name != "count-by-address" {
		t.Errorf("name %q", s.Name)
	}
}
