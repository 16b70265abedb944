// Keyed state kept by the host, and event time with timers (weir:stage@0.3.0).
//
// State's keys and values are bytes; each function is one host call. The writes a Process
// call makes take effect only if the call completes, and a stage that fails an event must
// have made no write for it: check an event before writing for it. A write the host refuses
// returns a *StateError and writes nothing; returned from Process, it fails the event with a
// reason the host recognises (`state-limit: ...`, dead-lettered with the kind state-limit).
//
// The functions are methods of State and Time, and call the host directly (host.go), so
// that Go's linker drops the ones a stage never calls with their imports: a component that
// never calls state gets no store from the host. Built natively, for tests, they work on
// memory (memory.go).
package weir

import "fmt"

// StateErrorKind is why the host refused a state operation.
type StateErrorKind uint8

const (
	// StateLimit is a limit of the stage's store; the text names it.
	StateLimit StateErrorKind = iota
	// NotACounter is an increment of a value that is not 8 bytes.
	NotACounter
	// Overflow is an increment past the range of an int64.
	Overflow
)

// StateError is why the host refused a state operation; nothing was written.
type StateError struct {
	Kind StateErrorKind
	Text string
}

// Error is the reason the event fails with when Process returns the error.
func (e *StateError) Error() string {
	switch e.Kind {
	case StateLimit:
		return "state-limit: " + e.Text
	case NotACounter:
		return "state: the value under the key is not a counter (8 bytes)"
	default:
		return "state: the counter would leave the range of a signed 64-bit integer"
	}
}

// NoTTL is the TTL of an entry that lives for ever.
const NoTTL = ^uint64(0)

// Entry is a write for State.SetMany: TTLms milliseconds of processing time, or NoTTL.
type Entry struct {
	Key, Value []byte
	TTLms      uint64
}

// Value is a value read by State.GetMany: Found is false for an absent key.
type Value struct {
	Bytes []byte
	Found bool
}

// Count is an increment for State.IncrementMany.
type Count struct {
	Key []byte
	By  int64
}

// Page is a page of a prefix scan: entries by increasing key, and whether another follows
// from Next (give it back as after).
type Page struct {
	Keys, Values [][]byte
	More         bool
	Next         []byte
}

// ScanPage is the most entries State.Scan asks the host for per call: the contract allows
// 1,024; a smaller page bounds the memory a scan holds at once and each host call's fuel.
const ScanPage = 256

type stateOps struct{}

// State is the stage's keyed state, kept by the host.
var State stateOps

// Get is the value under key, and whether there is one.
func (stateOps) Get(key []byte) ([]byte, bool) { return hostGet(key) }

// GetMany is Get of each key, in one host call.
func (stateOps) GetMany(keys [][]byte) []Value { return hostGetMany(keys) }

// Set writes value under key, for ever.
func (stateOps) Set(key, value []byte) error { return hostSet(key, value, NoTTL) }

// SetTTL writes value under key, living ttlMs milliseconds of processing time.
func (stateOps) SetTTL(key, value []byte, ttlMs uint64) error { return hostSet(key, value, ttlMs) }

// SetMany is Set of each entry in order, in one host call: one result per entry.
func (stateOps) SetMany(entries []Entry) []error { return hostSetMany(entries) }

// Delete removes key; removing an absent key does nothing.
func (stateOps) Delete(key []byte) { hostDelete(key) }

// DeleteMany is Delete of each key, in one host call.
func (stateOps) DeleteMany(keys [][]byte) { hostDeleteMany(keys) }

// Increment adds by to the counter under key (8 bytes, little-endian; absent counts as 0)
// and returns the new count.
func (stateOps) Increment(key []byte, by int64) (int64, error) { return hostIncrement(key, by) }

// IncrementMany is Increment of each, in one host call: a count and an error per key.
func (stateOps) IncrementMany(counts []Count) ([]int64, []error) { return hostIncrementMany(counts) }

// ScanPageFrom is a page of up to limit entries whose keys start with prefix, from the first
// key after `after` (from the start when after is nil).
func (stateOps) ScanPageFrom(prefix, after []byte, limit uint32) Page {
	return hostScan(prefix, after, limit)
}

// Scan calls fn with every entry whose key starts with prefix, by increasing key, paging
// through the host's cursor, until fn returns false.
func (s stateOps) Scan(prefix []byte, fn func(key, value []byte) bool) {
	var after []byte
	for {
		page := s.ScanPageFrom(prefix, after, ScanPage)
		for i := range page.Keys {
			if !fn(page.Keys[i], page.Values[i]) {
				return
			}
		}
		if !page.More {
			return
		}
		after = page.Next
	}
}

// Clock is the clock a timer follows.
type Clock uint8

const (
	// EventTime fires once the stage's watermark reaches the timer's time.
	EventTime Clock = iota
	// ProcessingTime fires once the host's wall clock does.
	ProcessingTime
)

// EndOfTime is the watermark once the input has ended, when every event-time timer fires.
const EndOfTime = ^uint64(0)

// Timer is a key (at most 1 KiB) and a time (ms since the Unix epoch) on a clock.
type Timer struct {
	Key   []byte
	At    uint64
	Clock Clock
}

func (t Timer) String() string { return fmt.Sprintf("timer %q at %d (clock %d)", t.Key, t.At, t.Clock) }

type timeOps struct{}

// Time is event time and timers.
var Time timeOps

// Watermarks is the watermark each event of the batch in progress saw, in input order (0
// before there is one); empty when no input carries event time, and in OnTimer.
func (timeOps) Watermarks() []uint64 {
	if marksSeq != batchSeq {
		marks, marksSeq = hostWatermarks(), batchSeq
	}
	return marks
}

// Watermark is the watermark an input event saw (0 when there is none).
func (t timeOps) Watermark(in *Event) uint64 {
	if m := t.Watermarks(); in.Index < len(m) {
		return m[in.Index]
	}
	return 0
}

// Now is the host's wall clock, in ms since the Unix epoch.
func (timeOps) Now() uint64 { return hostNow() }

// SetTimer sets a timer; setting one that is set does nothing. Refused over the stage's
// state limits.
func (timeOps) SetTimer(t Timer) error { return hostSetTimer(t) }

// SetTimers is SetTimer of each, in one host call: one result per timer.
func (timeOps) SetTimers(ts []Timer) []error { return hostSetTimers(ts) }

// CancelTimer cancels a timer; cancelling one that is not set does nothing.
func (timeOps) CancelTimer(t Timer) { hostCancelTimer(t) }

// The batch in progress, so that Watermarks asks the host once a batch.
var (
	batchSeq, marksSeq uint64
	marks              []uint64
)
