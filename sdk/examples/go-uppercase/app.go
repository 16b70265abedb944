// go-uppercase: a weir stage that upper-cases the ASCII letters of every value.
//
// Bytes other than a-z (UTF-8 multi-byte sequences included) are left as they are; the key,
// headers and timestamp pass through unchanged. See weir/weir.go for what Process may do.
package main

import "wit_component/weir"

func init() {
	weir.Register(weir.Stage{
		Name:    "go-uppercase",
		Version: "0.1.0",
		// Settings the pipeline file may give, e.g.
		//   {Name: "suffix", Type: weir.Text, Default: "", Help: "appended to every value"},
		Settings: nil,
		Process:  process,
	})
}

func process(in *weir.Event, out *weir.Out) error {
	value := out.EmitSpace(len(in.Value))
	for i, c := range in.Value {
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		value[i] = c
	}
	return nil
}
