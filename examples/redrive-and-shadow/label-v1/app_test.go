// The stage's golden test, run natively with `go test`: every line of golden/input.txt is
// an input event's value (with a key, a header and a timestamp), every line of
// golden/output.txt an output event's value, in order; outputs keep the key, header and
// timestamp of their input.
package main

import (
	"bytes"
	"fmt"
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
	if err := weir.InitWith(nil); err != nil {
		t.Fatalf("init with the defaults: %v", err)
	}
	var inputs []weir.NewEvent
	for i, v := range lines(t, "input.txt") {
		inputs = append(inputs, weir.NewEvent{
			Value:     v,
			Key:       []byte(fmt.Sprint(i)),
			HasKey:    true,
			Headers:   []weir.Header{{Name: "h", Value: []byte("v")}},
			Timestamp: uint64(1000 + i),
		})
	}
	out := weir.ProcessBatch(weir.Pack(inputs))
	if len(out.Failures) != 0 {
		t.Fatalf("failures: %v", out.Failures)
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
		var i int
		fmt.Sscan(string(e.Key), &i)
		if !e.HasKey || len(e.Headers) != 1 || e.Headers[0].Name != "h" || e.Timestamp != uint64(1000+i) {
			t.Errorf("output %d lost its input's key, header or timestamp: %+v", j, e)
		}
	}
}

func TestRejectsAnUnknownMessage(t *testing.T) {
	if err := weir.InitWith(nil); err != nil {
		t.Fatal(err)
	}
	line := `{"ts":"Dec 10 09:32:20","host":"LabSZ","proc":"sshd","pid":24680,"msg":"Did not receive identification string from 123.235.32.19"}`
	out := weir.ProcessBatch(weir.Pack([]weir.NewEvent{{Value: []byte(line), Timestamp: weir.NoTimestamp}}))
	if len(out.Failures) != 1 {
		t.Fatalf("failures %v", out.Failures)
	}
}
