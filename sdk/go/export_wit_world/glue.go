//go:build wasip1

// Package export_wit_world binds the stage registered with package weir to the bindings
// that `wit-bindgen go` generates for weir:stage@0.3.0. The author never edits it.
package export_wit_world

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"

	"wit_component/weir"
	"wit_component/weir_stage_log"
	"wit_component/weir_stage_time"
	. "wit_component/weir_stage_types"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

func init() {
	// The garbage collector runs only at the end of a batch (see collect).
	debug.SetGCPercent(-1)
	weir.LogSink = func(level weir.Level, message string) {
		weir_stage_log.Log(weir_stage_log.Level(level), message)
	}
}

func Describe() Description {
	s := weir.Registered()
	settings := make([]Setting, 0, len(s.Settings))
	for _, d := range s.Settings {
		def := witTypes.None[string]()
		if text, ok := d.DefaultText(); ok {
			def = witTypes.Some(text)
		}
		settings = append(settings, Setting{
			Name:     d.Name,
			Type:     SettingType(d.Type),
			Required: d.Required,
			Default:  def,
			Help:     d.Help,
		})
	}
	return Description{Name: s.Name, Version: s.Version, Settings: settings}
}

func Init(given []witTypes.Tuple2[string, string]) witTypes.Result[witTypes.Unit, string] {
	pairs := make([][2]string, len(given))
	for i, kv := range given {
		// The generated code's strings point into memory it frees: copy them.
		pairs[i] = [2]string{string([]byte(kv.F0)), string([]byte(kv.F1))}
	}
	if err := weir.InitWith(pairs); err != nil {
		return witTypes.Err[witTypes.Unit](err.Error())
	}
	return witTypes.Ok[witTypes.Unit, string](witTypes.Unit{})
}

var failures []Failure

// Go's collector calls WASI imports (clocks) when it runs. Left to itself, it may run inside
// the cabi_realloc calls with which the host hands over the next batch, where the component
// model forbids imports: the call traps with "cannot leave component instance". So it is
// off (see init), and collect runs it at the end of a batch, once the batches have
// allocated gcEvery bytes since the last collection.
const gcEvery = 4 << 20

var (
	allocs     = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	lastAllocs uint64
)

func collect() {
	metrics.Read(allocs)
	if now := allocs[0].Value.Uint64(); now-lastAllocs >= gcEvery {
		runtime.GC()
		lastAllocs = now
	}
}

func Process(batch Batch) Output {
	defer collect()
	in := weir.Batch(batch)
	o := weir.ProcessBatch(&in)
	failures = failures[:0]
	for _, f := range o.Failures {
		failures = append(failures, Failure{Index: f.Index, Kind: FailureKind(f.Kind), Reason: f.Reason})
	}
	return Output{
		Events:   Batch(o.Events),
		Counts:   o.Counts,
		Failures: failures,
	}
}

// OnTimer hands the timers that fired to the stage's OnTimer: the events they became.
func OnTimer(fired []weir_stage_time.Timer) Batch {
	defer collect()
	timers := make([]weir.Timer, len(fired))
	for i, t := range fired {
		// The generated code's lists point into memory it frees: copy the keys.
		timers[i] = weir.Timer{Key: append([]byte(nil), t.Key...), At: t.At, Clock: weir.Clock(t.Clock)}
	}
	return Batch(weir.TimerBatch(timers))
}
