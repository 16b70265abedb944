// Package weir writes a weir stage in Go, one function per event.
//
// A stage registers itself from its main package's init:
//
//	func init() {
//		weir.Register(weir.Stage{
//			Name:     "my-stage",
//			Version:  "0.1.0",
//			Settings: []weir.Setting{{Name: "prefix", Type: weir.Text, Default: "", Help: "put before every value"}},
//			Init:     func(s weir.Settings) error { ... },  // optional
//			Process:  process,                              // once per input event
//		})
//	}
//
//	func process(in *weir.Event, out *weir.Out) error {
//		out.Emit(bytes.ToUpper(in.Value))
//		return nil
//	}
//
// Process says what the input became through out: Emit (a value, keeping the input's key,
// headers and timestamp), EmitSpace (the same, returning the bytes to write into), Pass (the
// input as it is), EmitEvent (an event of its own parts); emitting nothing filters the event
// out. Returning Reject(reason) dead-letters the event, Retry(reason) asks the host to retry
// it later, and any other error rejects it with the error's text; a panic traps the
// instance, as in Rust.
//
// Under the weir:stage@0.3.0 contract a stage also has the host's keyed state (State: get,
// set with a TTL, delete, increment, scan, and their batched forms) and event time (Time:
// watermarks, the wall clock, timers), and may register OnTimer, called with the timers that
// fired; what it emits flows on like Process's outputs (see state.go).
//
// The package is plain Go (it builds and tests natively) and does the packing: an input event
// is a view into the batch's buffer, outputs are appended to one output buffer kept from
// batch to batch, and Counts stays empty when every input became exactly one output. The
// package export_wit_world binds it to the generated bindings.
package weir

import (
	"errors"
	"fmt"
	"os"
	"strconv"
)

const (
	NoKey       = ^uint32(0)
	NoTimestamp = ^uint64(0)
)

// SettingType is a declared setting's type.
type SettingType uint8

const (
	Text SettingType = iota
	Integer
	Float
	Boolean
)

// Setting declares a setting the pipeline file may give. Default is nil for none, else a
// string, integer, float or bool.
type Setting struct {
	Name     string
	Type     SettingType
	Default  any
	Required bool
	Help     string
}

// DefaultText is the setting's default as the contract carries it, and whether it has one.
func (s Setting) DefaultText() (string, bool) {
	switch d := s.Default.(type) {
	case nil:
		return "", false
	case string:
		return d, true
	default:
		return fmt.Sprint(d), true
	}
}

// Settings are what Init gets: every declared setting's given value or default.
type Settings map[string]string

func (s Settings) Text(name string) string { return s[name] }

func (s Settings) Int(name string) int64 {
	v, _ := strconv.ParseInt(s[name], 10, 64)
	return v
}

func (s Settings) Float(name string) float64 {
	v, _ := strconv.ParseFloat(s[name], 64)
	return v
}

func (s Settings) Bool(name string) bool { return s[name] == "true" }

// Stage is what a stage registers.
type Stage struct {
	Name     string
	Version  string
	Settings []Setting
	Init     func(Settings) error
	Process  func(in *Event, out *Out) error
	// OnTimer, optional, gets the timers that fired, in time order. out.Emit makes an event
	// of a value alone (no key, no timestamp), out.EmitEvent one of its own parts; Pass does
	// nothing. A stage that sets no timer is never called.
	OnTimer func(fired []Timer, out *Out)
}

var registered *Stage

// Register makes s the stage of this component; call it from an init function.
func Register(s Stage) {
	if s.Process == nil {
		panic("weir.Register: the stage has no Process")
	}
	registered = &s
}

// Registered is the registered stage.
func Registered() *Stage {
	if registered == nil {
		panic("no stage registered: call weir.Register from an init function")
	}
	return registered
}

// Level is a log line's level.
type Level uint8

const (
	Trace Level = iota
	Debug
	Info
	Warn
	Error
)

// LogSink is where Log writes: the component sets it to the host's log.
var LogSink = func(level Level, message string) {
	fmt.Fprintf(os.Stderr, "[%d] %s\n", level, message)
}

// Log writes a line to the host's log (rate-limited by the host).
func Log(level Level, format string, args ...any) {
	LogSink(level, fmt.Sprintf(format, args...))
}

// FailureKind says how an event failed.
type FailureKind uint8

const (
	KindReject FailureKind = iota
	KindRetry
)

// Failure is an error that says how the event failed.
type Failure struct {
	Kind   FailureKind
	Reason string
}

func (f *Failure) Error() string { return f.Reason }

// Reject dead-letters the event with the reason.
func Reject(reason string) error { return &Failure{KindReject, reason} }

// Retry asks the host to retry the event later.
func Retry(reason string) error { return &Failure{KindRetry, reason} }

// Batch is a packed batch, laid out as the contract's record.
type Batch struct {
	Data       []byte
	Events     []uint32
	Headers    []uint32
	Timestamps []uint64
}

// Event is an input event: views into its batch, valid during Process only.
type Event struct {
	Value  []byte
	Index  int
	batch  *Batch
	fields []uint32
}

// Key is the event's key, and whether it has one.
func (e *Event) Key() ([]byte, bool) {
	if e.fields[3] == NoKey {
		return nil, false
	}
	return e.batch.Data[e.fields[2] : e.fields[2]+e.fields[3]], true
}

// Timestamp is the event's timestamp in ms since the epoch, and whether it has one.
func (e *Event) Timestamp() (uint64, bool) {
	if len(e.batch.Timestamps) == 0 || e.batch.Timestamps[e.Index] == NoTimestamp {
		return 0, false
	}
	return e.batch.Timestamps[e.Index], true
}

// HeaderCount is the number of the event's headers.
func (e *Event) HeaderCount() int { return int(e.fields[5]) }

// Header is the event's header i: name and value.
func (e *Event) Header(i int) (string, []byte) {
	h := e.batch.Headers[4*(int(e.fields[4])+i):]
	return string(e.batch.Data[h[0] : h[0]+h[1]]), e.batch.Data[h[2] : h[2]+h[3]]
}

// FindHeader is the value of the first header called name, and whether there is one.
func (e *Event) FindHeader(name string) ([]byte, bool) {
	for i := 0; i < e.HeaderCount(); i++ {
		h := e.batch.Headers[4*(int(e.fields[4])+i):]
		if string(e.batch.Data[h[0]:h[0]+h[1]]) == name {
			return e.batch.Data[h[2] : h[2]+h[3]], true
		}
	}
	return nil, false
}

// Header is a header of an event being made.
type Header struct {
	Name  string
	Value []byte
}

// NewEvent is an event made of its own parts.
type NewEvent struct {
	Value     []byte
	Key       []byte // with HasKey
	HasKey    bool
	Headers   []Header
	Timestamp uint64 // NoTimestamp for none
}

// Out collects what input events become.
type Out struct {
	batch    Batch
	counts   []uint32
	failures []FailureOut
	anyTs    bool
	in       *Event
	count    uint32
}

// FailureOut is a failed input event of a batch.
type FailureOut struct {
	Index  uint32
	Kind   FailureKind
	Reason string
}

func (o *Out) put(b []byte) uint32 {
	start := uint32(len(o.batch.Data))
	o.batch.Data = append(o.batch.Data, b...)
	return start
}

func (o *Out) pushEvent(vs, vl, ks, kl, first, count uint32, ts uint64) {
	if count == 0 {
		first = 0
	}
	o.batch.Events = append(o.batch.Events, vs, vl, ks, kl, first, count)
	o.batch.Timestamps = append(o.batch.Timestamps, ts)
	if ts != NoTimestamp {
		o.anyTs = true
	}
	o.count++
}

// EmitSpace emits an event with a value of n bytes, keeping the input's key, headers and
// timestamp, and returns the value's bytes to write into (valid until the next emit).
func (o *Out) EmitSpace(n int) []byte {
	in := o.in
	if in == nil {
		// In OnTimer there is no input: the value alone.
		vs := uint32(len(o.batch.Data))
		o.batch.Data = append(o.batch.Data, make([]byte, n)...)
		o.pushEvent(vs, uint32(n), 0, NoKey, 0, 0, NoTimestamp)
		return o.batch.Data[vs : vs+uint32(n)]
	}
	f := in.fields
	src := in.batch
	ks, kl := uint32(0), f[3]
	if kl != NoKey {
		ks = o.put(src.Data[f[2] : f[2]+kl])
	}
	first := uint32(len(o.batch.Headers) / 4)
	for h := f[4]; h < f[4]+f[5]; h++ {
		hf := src.Headers[4*h : 4*h+4]
		ns := o.put(src.Data[hf[0] : hf[0]+hf[1]])
		vs := o.put(src.Data[hf[2] : hf[2]+hf[3]])
		o.batch.Headers = append(o.batch.Headers, ns, hf[1], vs, hf[3])
	}
	vs := uint32(len(o.batch.Data))
	o.batch.Data = append(o.batch.Data, make([]byte, n)...)
	ts := NoTimestamp
	if len(src.Timestamps) > 0 {
		ts = src.Timestamps[in.Index]
	}
	o.pushEvent(vs, uint32(n), ks, kl, first, f[5], ts)
	return o.batch.Data[vs : vs+uint32(n)]
}

// Emit emits an event with this value, keeping the input's key, headers and timestamp.
func (o *Out) Emit(value []byte) {
	copy(o.EmitSpace(len(value)), value)
}

// Pass emits the input event as it is.
func (o *Out) Pass() {
	if o.in != nil {
		o.Emit(o.in.Value)
	}
}

// EmitEvent emits an event made of its own parts.
func (o *Out) EmitEvent(e NewEvent) {
	ks, kl := uint32(0), NoKey
	if e.HasKey {
		ks, kl = o.put(e.Key), uint32(len(e.Key))
	}
	first := uint32(len(o.batch.Headers) / 4)
	for _, h := range e.Headers {
		ns := o.put([]byte(h.Name))
		vs := o.put(h.Value)
		o.batch.Headers = append(o.batch.Headers, ns, uint32(len(h.Name)), vs, uint32(len(h.Value)))
	}
	vs := o.put(e.Value)
	o.pushEvent(vs, uint32(len(e.Value)), ks, kl, first, uint32(len(e.Headers)), e.Timestamp)
}

// Output is what became of a batch; its slices are reused by the next call.
type Output struct {
	Events   Batch
	Counts   []uint32
	Failures []FailureOut
}

var out Out

// ProcessBatch runs the registered stage's Process on every event of in.
func ProcessBatch(in *Batch) Output {
	process := Registered().Process
	o := &out
	o.restart()
	n := len(in.Events) / 6
	oneEach := true
	ev := Event{batch: in}
	for i := 0; i < n; i++ {
		f := in.Events[6*i : 6*i+6]
		ev.Index, ev.fields, ev.Value = i, f, in.Data[f[0]:f[0]+f[1]]
		o.in, o.count = &ev, 0
		marks := [4]int{len(o.batch.Data), len(o.batch.Events), len(o.batch.Headers), len(o.batch.Timestamps)}
		if err := process(&ev, o); err != nil {
			var failure *Failure
			kind, reason := KindReject, err.Error()
			if errors.As(err, &failure) {
				kind, reason = failure.Kind, failure.Reason
			}
			// A failed event has no outputs: drop any it emitted.
			o.batch.Data = o.batch.Data[:marks[0]]
			o.batch.Events = o.batch.Events[:marks[1]]
			o.batch.Headers = o.batch.Headers[:marks[2]]
			o.batch.Timestamps = o.batch.Timestamps[:marks[3]]
			o.count = 0
			o.failures = append(o.failures, FailureOut{uint32(i), kind, reason})
		}
		o.counts = append(o.counts, o.count)
		if o.count != 1 {
			oneEach = false
		}
	}
	o.in = nil
	result := Output{Events: o.batch, Counts: o.counts, Failures: o.failures}
	if oneEach {
		result.Counts = result.Counts[:0]
	}
	if !o.anyTs {
		result.Events.Timestamps = result.Events.Timestamps[:0]
	}
	return result
}

// restart empties the output for the next call, keeping its buffers.
func (o *Out) restart() {
	o.batch.Data = o.batch.Data[:0]
	o.batch.Events = o.batch.Events[:0]
	o.batch.Headers = o.batch.Headers[:0]
	o.batch.Timestamps = o.batch.Timestamps[:0]
	o.counts = o.counts[:0]
	o.failures = o.failures[:0]
	o.anyTs = false
	o.in = nil
	batchSeq++
}

// TimerBatch runs the registered stage's OnTimer on the timers that fired: the events they
// became.
func TimerBatch(fired []Timer) Batch {
	o := &out
	o.restart()
	if onTimer := Registered().OnTimer; onTimer != nil {
		onTimer(fired, o)
	}
	result := o.batch
	if !o.anyTs {
		result.Timestamps = result.Timestamps[:0]
	}
	return result
}

// InitWith checks given settings (pairs of name and value) against the registered
// stage's declarations and calls its Init.
func InitWith(given [][2]string) error {
	s := Registered()
	values := Settings{}
	for _, kv := range given {
		found := false
		for _, d := range s.Settings {
			found = found || d.Name == kv[0]
		}
		if !found {
			return fmt.Errorf("unknown setting `%s`", kv[0])
		}
		values[kv[0]] = kv[1]
	}
	for _, d := range s.Settings {
		v, ok := values[d.Name]
		if !ok {
			if d.Required {
				return fmt.Errorf("setting `%s` is required", d.Name)
			}
			if v, ok = d.DefaultText(); !ok {
				continue
			}
			values[d.Name] = v
		}
		var err error
		switch d.Type {
		case Integer:
			_, err = strconv.ParseInt(v, 10, 64)
		case Float:
			_, err = strconv.ParseFloat(v, 64)
		case Boolean:
			if v != "true" && v != "false" {
				err = errors.New("not true or false")
			}
		}
		if err != nil {
			return fmt.Errorf("setting `%s`: %q: %v", d.Name, v, err)
		}
	}
	if s.Init != nil {
		return s.Init(values)
	}
	return nil
}

// Pack packs events into a batch: how a test builds an input.
func Pack(events []NewEvent) *Batch {
	var o Out
	o.in = nil
	for _, e := range events {
		o.EmitEvent(e)
	}
	if !o.anyTs {
		o.batch.Timestamps = nil
	}
	return &o.batch
}

// Unpacked is an output event read apart, for tests.
type Unpacked struct {
	Value     []byte
	Key       []byte
	HasKey    bool
	Headers   []Header
	Timestamp uint64
}

// Unpack reads a batch apart.
func Unpack(b Batch) []Unpacked {
	var res []Unpacked
	for i := 0; i < len(b.Events)/6; i++ {
		f := b.Events[6*i : 6*i+6]
		e := Event{Index: i, batch: &b, fields: f, Value: b.Data[f[0] : f[0]+f[1]]}
		u := Unpacked{Value: append([]byte(nil), e.Value...), Timestamp: NoTimestamp}
		if k, ok := e.Key(); ok {
			u.Key, u.HasKey = append([]byte(nil), k...), true
		}
		for h := 0; h < e.HeaderCount(); h++ {
			n, v := e.Header(h)
			u.Headers = append(u.Headers, Header{n, append([]byte(nil), v...)})
		}
		if ts, ok := e.Timestamp(); ok {
			u.Timestamp = ts
		}
		res = append(res, u)
	}
	return res
}
