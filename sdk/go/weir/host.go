//go:build wasip1

// State and timers through the host's imports, called directly so that Go's linker drops
// each function a stage never calls, with its import.
package weir

import (
	"bytes"

	"wit_component/weir_stage_state"
	"wit_component/weir_stage_time"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

func stateError(e weir_stage_state.StateError) error {
	switch e.Tag() {
	case weir_stage_state.StateErrorLimit:
		return &StateError{Kind: StateLimit, Text: e.Limit()}
	case weir_stage_state.StateErrorNotACounter:
		return &StateError{Kind: NotACounter}
	default:
		return &StateError{Kind: Overflow}
	}
}

func unitErrors(rs []witTypes.Result[witTypes.Unit, weir_stage_state.StateError]) []error {
	out := make([]error, len(rs))
	for i, r := range rs {
		if r.IsErr() {
			out[i] = stateError(r.Err())
		}
	}
	return out
}

func ttl(ms uint64) witTypes.Option[uint64] {
	if ms == NoTTL {
		return witTypes.None[uint64]()
	}
	return witTypes.Some(ms)
}

func hostGet(key []byte) ([]byte, bool) {
	v := weir_stage_state.Get(key)
	if v.IsNone() {
		return nil, false
	}
	return bytes.Clone(v.Some()), true
}

func hostGetMany(keys [][]byte) []Value {
	got := weir_stage_state.GetMany(keys)
	out := make([]Value, len(got))
	for i, v := range got {
		if v.IsSome() {
			out[i] = Value{bytes.Clone(v.Some()), true}
		}
	}
	return out
}

func hostSet(key, value []byte, ttlMs uint64) error {
	r := weir_stage_state.Set(weir_stage_state.Entry{Key: key, Value: value, TtlMs: ttl(ttlMs)})
	if r.IsErr() {
		return stateError(r.Err())
	}
	return nil
}

func hostSetMany(entries []Entry) []error {
	es := make([]weir_stage_state.Entry, len(entries))
	for i, e := range entries {
		es[i] = weir_stage_state.Entry{Key: e.Key, Value: e.Value, TtlMs: ttl(e.TTLms)}
	}
	return unitErrors(weir_stage_state.SetMany(es))
}

func hostDelete(key []byte) { weir_stage_state.Delete(key) }

func hostDeleteMany(keys [][]byte) { weir_stage_state.DeleteMany(keys) }

func hostIncrement(key []byte, by int64) (int64, error) {
	r := weir_stage_state.Increment(key, by)
	if r.IsErr() {
		return 0, stateError(r.Err())
	}
	return r.Ok(), nil
}

func hostIncrementMany(counts []Count) ([]int64, []error) {
	cs := make([]witTypes.Tuple2[[]uint8, int64], len(counts))
	for i, c := range counts {
		cs[i] = witTypes.Tuple2[[]uint8, int64]{F0: c.Key, F1: c.By}
	}
	rs := weir_stage_state.IncrementMany(cs)
	out, errs := make([]int64, len(rs)), make([]error, len(rs))
	for i, r := range rs {
		if r.IsErr() {
			errs[i] = stateError(r.Err())
		} else {
			out[i] = r.Ok()
		}
	}
	return out, errs
}

func hostScan(prefix, after []byte, limit uint32) Page {
	a := witTypes.None[[]uint8]()
	if after != nil {
		a = witTypes.Some(after)
	}
	p := weir_stage_state.Scan(prefix, a, limit)
	var page Page
	for _, e := range p.Entries {
		page.Keys = append(page.Keys, bytes.Clone(e.F0))
		page.Values = append(page.Values, bytes.Clone(e.F1))
	}
	if p.Next.IsSome() {
		page.More, page.Next = true, bytes.Clone(p.Next.Some())
	}
	return page
}

func hostWatermarks() []uint64 { return weir_stage_time.Watermarks() }

func hostNow() uint64 { return weir_stage_time.Now() }

func hostTimer(t Timer) weir_stage_time.Timer {
	return weir_stage_time.Timer{Key: t.Key, At: t.At, Clock: uint8(t.Clock)}
}

func hostSetTimer(t Timer) error {
	r := weir_stage_time.SetTimer(hostTimer(t))
	if r.IsErr() {
		return stateError(r.Err())
	}
	return nil
}

func hostSetTimers(ts []Timer) []error {
	hs := make([]weir_stage_time.Timer, len(ts))
	for i, t := range ts {
		hs[i] = hostTimer(t)
	}
	return unitErrors(weir_stage_time.SetTimers(hs))
}

func hostCancelTimer(t Timer) { weir_stage_time.CancelTimer(hostTimer(t)) }
