// The stage's golden test, run natively with `go test`: every line of golden/input.txt is
// an input event's value (no key: the value is counted), every line of golden/output.txt an
// output event's value, in order: one per input, then the final counts the timers emit at
// the end of the input.
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
	for _, v := range lines(t, "input.txt") {
		inputs = append(inputs, weir.NewEvent{Value: v, Timestamp: weir.NoTimestamp})
	}
	out := weir.ProcessBatch(weir.Pack(inputs))
	if len(out.Failures) != 0 || len(out.Counts) != 0 {
		t.Fatalf("failures %v, counts %v", out.Failures, out.Counts)
	}
	got := weir.Unpack(out.Events)
	// The input ends: the watermark reaches the end of time and every timer fires.
	finals := weir.Unpack(weir.TimerBatch(weir.NativeDue(weir.EndOfTime)))
	for _, e := range finals {
		if e.HasKey {
			t.Errorf("a final count has a key: %+v", e)
		}
	}
	got = append(got, finals...)
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

func TestDescribe(t *testing.T) {
	if s := weir.Registered(); s.Name != "{{name}}" {
		t.Errorf("name %q", s.Name)
	}
}
