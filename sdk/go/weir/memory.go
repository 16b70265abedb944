//go:build !wasip1

// State and timers in memory, for a stage's native tests: the host's semantics (TTLs, the
// 8-byte counters, sorted prefix scans, one timer per key, time and clock) without its
// limits, fuel or atomicity. Native and its functions drive it as the host would.
package weir

import (
	"bytes"
	"encoding/binary"
	"math"
	"sort"
	"time"
)

type slot struct {
	value  []byte
	expiry uint64 // NoTTL for none
}

var (
	memory       = map[string]slot{}
	memoryTimers = map[timerKey]bool{}
	memoryMarks  []uint64
)

// timerKey is a timer as a map key.
type timerKey struct {
	Key   string
	At    uint64
	Clock Clock
}

func nowMs() uint64 { return uint64(time.Now().UnixMilli()) }

func live(k string) ([]byte, bool) {
	s, ok := memory[k]
	if !ok {
		return nil, false
	}
	if s.expiry != NoTTL && s.expiry <= nowMs() {
		delete(memory, k)
		return nil, false
	}
	return s.value, true
}

func hostGet(key []byte) ([]byte, bool) {
	v, ok := live(string(key))
	return bytes.Clone(v), ok
}

func hostGetMany(keys [][]byte) []Value {
	out := make([]Value, len(keys))
	for i, k := range keys {
		out[i].Bytes, out[i].Found = hostGet(k)
	}
	return out
}

func hostSet(key, value []byte, ttl uint64) error {
	expiry := NoTTL
	if ttl != NoTTL {
		expiry = nowMs() + ttl
	}
	memory[string(key)] = slot{bytes.Clone(value), expiry}
	return nil
}

func hostSetMany(entries []Entry) []error {
	out := make([]error, len(entries))
	for i, e := range entries {
		out[i] = hostSet(e.Key, e.Value, e.TTLms)
	}
	return out
}

func hostDelete(key []byte) { delete(memory, string(key)) }

func hostDeleteMany(keys [][]byte) {
	for _, k := range keys {
		hostDelete(k)
	}
}

func hostIncrement(key []byte, by int64) (int64, error) {
	k := string(key)
	v, ok := live(k)
	var before int64
	expiry := NoTTL
	if ok {
		if len(v) != 8 {
			return 0, &StateError{Kind: NotACounter}
		}
		before = int64(binary.LittleEndian.Uint64(v))
		expiry = memory[k].expiry
	}
	if (by > 0 && before > math.MaxInt64-by) || (by < 0 && before < math.MinInt64-by) {
		return 0, &StateError{Kind: Overflow}
	}
	memory[k] = slot{binary.LittleEndian.AppendUint64(nil, uint64(before+by)), expiry}
	return before + by, nil
}

func hostIncrementMany(counts []Count) ([]int64, []error) {
	out, errs := make([]int64, len(counts)), make([]error, len(counts))
	for i, c := range counts {
		out[i], errs[i] = hostIncrement(c.Key, c.By)
	}
	return out, errs
}

func hostScan(prefix, after []byte, limit uint32) Page {
	keys := make([]string, 0, len(memory))
	for k := range memory {
		if bytes.HasPrefix([]byte(k), prefix) && (after == nil || k > string(after)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var page Page
	for _, k := range keys {
		v, ok := live(k)
		if !ok {
			continue
		}
		if uint32(len(page.Keys)) == limit {
			page.More, page.Next = true, page.Keys[len(page.Keys)-1]
			break
		}
		page.Keys, page.Values = append(page.Keys, []byte(k)), append(page.Values, bytes.Clone(v))
	}
	return page
}

func hostWatermarks() []uint64 { return memoryMarks }

func hostNow() uint64 { return nowMs() }

func hostSetTimer(t Timer) error {
	memoryTimers[timerKey{string(t.Key), t.At, t.Clock}] = true
	return nil
}

func hostSetTimers(ts []Timer) []error {
	out := make([]error, len(ts))
	for i, t := range ts {
		out[i] = hostSetTimer(t)
	}
	return out
}

func hostCancelTimer(t Timer) { delete(memoryTimers, timerKey{string(t.Key), t.At, t.Clock}) }

// NativeSetWatermarks sets the watermarks the events of the next batch see.
func NativeSetWatermarks(marks []uint64) { memoryMarks = marks }

// NativeDue removes and returns the event-time timers at or before mark, in time order.
func NativeDue(mark uint64) []Timer {
	var fired []Timer
	for t := range memoryTimers {
		if t.Clock == EventTime && t.At <= mark {
			fired = append(fired, Timer{[]byte(t.Key), t.At, t.Clock})
			delete(memoryTimers, t)
		}
	}
	sort.Slice(fired, func(i, j int) bool {
		if fired[i].At != fired[j].At {
			return fired[i].At < fired[j].At
		}
		return bytes.Compare(fired[i].Key, fired[j].Key) < 0
	})
	return fired
}

// NativeReset empties the state and the timers.
func NativeReset() {
	memory, memoryTimers, memoryMarks = map[string]slot{}, map[timerKey]bool{}, nil
}
