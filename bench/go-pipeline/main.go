// Command go-pipeline runs the workloads W1, W2 and W3 of WORKLOADS.md as a hand-written Go
// channel pipeline: the baseline weir's speed targets are stated against.
//
//	go-pipeline w1 EVENTS [OUT]     three passthrough stages, a counting sink
//	go-pipeline w2 EVENTS [OUT]     three ASCII-uppercase stages, a counting sink
//	go-pipeline w3 LOG REPEAT OUT   parse, filter, redact; JSON lines into OUT
//
// It is written the way the Go pipeline literature models it ("Go Concurrency Patterns:
// Pipelines and cancellation"): a reader goroutine, one goroutine per stage, a sink
// goroutine, bounded channels between them, and a done channel closed on the first error so
// that every goroutine stops instead of blocking on a send. What moves on a channel is a batch
// of up to 256 events, [][]byte: each value a slice of one buffer per batch, so a batch costs
// two allocations whatever its size. GOMAXPROCS is Go's default (every core).
//
// W1/W2 count the events and bytes the sink takes and compare the first value of every batch
// with what it must be; with OUT they write each value and a newline there instead (the
// harness's content check). W3 writes each value and a newline to OUT through a 64 KiB buffer.
//
// The stages between parse and the sink exchange the JSON object as bytes, as weir's stages
// do: filter and redact find `msg` in the compact object parse writes, and read any other
// object with encoding/json. The output is byte for byte that of weir's plugins
// (plugins/sshd-parse, auth-filter, redact-ip): the same escapes, the same lines rejected.
//
// At the end it prints one line of JSON on stdout:
//
//	{"events_in":N,"events_out":N,"bytes_out":N,"dead_lettered":N,"elapsed_s":S,"total_s":S}
//
// elapsed_s runs from the start of reading to the end of the last write, total_s from the
// start of the process's main function to the end.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	// Events per batch, as weir's default and the Rust ceiling's.
	batchSize = 256
	// Batches each channel holds, as weir's default buffer: bounds the memory in flight.
	channelBatches = 4
	// Bytes of every W1/W2 value.
	valueSize = 100
	// The longest W3 line read: a log without line endings is an error, not all of memory.
	maxLine = 1 << 20
	// The writer's buffer, as weir's file sink and the Rust ceiling.
	writeBuffer = 64 << 10
)

// A batch of event values.
type batch [][]byte

// builder gathers a batch's values in one buffer; value i ends at ends[i].
type builder struct {
	data []byte
	ends []int
}

func newBuilder(events, bytes int) *builder {
	return &builder{data: make([]byte, 0, bytes), ends: make([]int, 0, events)}
}

// end closes the value whose bytes were appended to data since the last one.
func (b *builder) end() { b.ends = append(b.ends, len(b.data)) }

func (b *builder) len() int { return len(b.ends) }

// batch slices the buffer into its values; the builder is not used afterwards.
func (b *builder) batch() batch {
	out := make(batch, len(b.ends))
	start := 0
	for i, end := range b.ends {
		out[i] = b.data[start:end:end]
		start = end
	}
	return out
}

// pipeline holds what every goroutine shares: the done channel and the first error.
type pipeline struct {
	done chan struct{}
	once sync.Once
	err  error
	wg   sync.WaitGroup
}

func newPipeline() *pipeline { return &pipeline{done: make(chan struct{})} }

// fail records the first error and tells every goroutine to stop.
func (p *pipeline) fail(err error) {
	p.once.Do(func() {
		p.err = err
		close(p.done)
	})
}

// send passes a batch on, unless the pipeline has stopped.
func (p *pipeline) send(out chan<- batch, b batch) bool {
	select {
	case out <- b:
		return true
	case <-p.done:
		return false
	}
}

// goroutine runs f with the pipeline's wait group.
func (p *pipeline) goroutine(f func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
}

// A stage's logic on one batch: the batch out, and how many events it rejected (dead letters).
type step func(in batch) (batch, int)

// stage starts one goroutine running step on every batch of in.
func (p *pipeline) stage(in <-chan batch, s step, rejects *int) <-chan batch {
	out := make(chan batch, channelBatches)
	p.goroutine(func() {
		defer close(out)
		for b := range in {
			next, r := s(b)
			*rejects += r
			if len(next) > 0 && !p.send(out, next) {
				return
			}
		}
	})
	return out
}

func main() {
	started := time.Now()
	if err := run(os.Args[1:], started); err != nil {
		fmt.Fprintf(os.Stderr, "go-pipeline: %v\n", err)
		os.Exit(1)
	}
}

const usage = "usage: go-pipeline w1|w2 EVENTS [OUT] | go-pipeline w3 LOG REPEAT OUT"

func run(args []string, started time.Time) error {
	if len(args) < 2 {
		return errors.New(usage)
	}
	workload := args[0]
	var source func(p *pipeline, out chan<- batch) (uint64, error)
	var steps [3]step
	var output string
	var check func(first []byte, index uint64) error
	switch workload {
	case "w1", "w2":
		if len(args) > 3 {
			return errors.New(usage)
		}
		events, err := strconv.ParseUint(args[1], 10, 64)
		if err != nil {
			return fmt.Errorf("EVENTS %q: %v", args[1], err)
		}
		if len(args) == 3 {
			output = args[2]
		}
		upper := workload == "w2"
		source = func(p *pipeline, out chan<- batch) (uint64, error) { return generate(p, out, events) }
		if upper {
			steps = [3]step{uppercase, uppercase, uppercase}
		} else {
			steps = [3]step{passthrough, passthrough, passthrough}
		}
		check = func(first []byte, index uint64) error {
			if want := expectedValue(index, upper); !bytes.Equal(first, want) {
				return fmt.Errorf("event %d is %q, expected %q", index, first, want)
			}
			return nil
		}
	case "w3":
		if len(args) != 4 {
			return errors.New(usage)
		}
		log := args[1]
		repeat, err := strconv.ParseUint(args[2], 10, 64)
		if err != nil {
			return fmt.Errorf("REPEAT %q: %v", args[2], err)
		}
		output = args[3]
		source = func(p *pipeline, out chan<- batch) (uint64, error) { return readLog(p, out, log, repeat) }
		steps = [3]step{parseStep, filterStep, redactStep}
	default:
		return fmt.Errorf("unknown workload %q; %s", workload, usage)
	}

	var file *os.File
	if output != "" {
		f, err := os.Create(output)
		if err != nil {
			return err
		}
		defer f.Close()
		file = f
	}

	begun := time.Now()
	p := newPipeline()
	var eventsIn uint64
	in := make(chan batch, channelBatches)
	p.goroutine(func() {
		defer close(in)
		n, err := source(p, in)
		if err != nil {
			p.fail(err)
		}
		eventsIn = n
	})
	var rejects [3]int
	var c <-chan batch = in
	for i, s := range steps {
		c = p.stage(c, s, &rejects[i])
	}
	var eventsOut, bytesOut uint64
	p.goroutine(func() {
		var err error
		if file != nil {
			eventsOut, bytesOut, err = write(p, c, file)
		} else {
			eventsOut, bytesOut, err = count(p, c, check)
		}
		if err != nil {
			p.fail(err)
		}
	})
	p.wg.Wait()
	if p.err != nil {
		return p.err
	}
	elapsed := time.Since(begun)
	if file != nil {
		if err := file.Close(); err != nil {
			return err
		}
	}
	dead := rejects[0] + rejects[1] + rejects[2]
	fmt.Printf("{\"events_in\":%d,\"events_out\":%d,\"bytes_out\":%d,\"dead_lettered\":%d,\"elapsed_s\":%.6f,\"total_s\":%.6f}\n",
		eventsIn, eventsOut, bytesOut, dead, elapsed.Seconds(), time.Since(started).Seconds())
	return nil
}

// count is W1/W2's sink: it counts events and value bytes, and checks the first value of every
// batch.
func count(p *pipeline, in <-chan batch, check func([]byte, uint64) error) (uint64, uint64, error) {
	var events, size uint64
	for b := range in {
		if err := check(b[0], events); err != nil {
			return events, size, err
		}
		for _, v := range b {
			size += uint64(len(v))
		}
		events += uint64(len(b))
	}
	return events, size, nil
}

// write is the file sink: each value and a newline, through a buffer.
func write(p *pipeline, in <-chan batch, f *os.File) (uint64, uint64, error) {
	w := bufio.NewWriterSize(f, writeBuffer)
	var events, size uint64
	for b := range in {
		for _, v := range b {
			w.Write(v)
			w.WriteByte('\n')
			size += uint64(len(v))
		}
		events += uint64(len(b))
	}
	// bufio.Writer keeps its first error: one check covers every write.
	if err := w.Flush(); err != nil {
		return events, size, fmt.Errorf("writing %s: %v", f.Name(), err)
	}
	return events, size, nil
}

// generate is W1/W2's source: event i's value has byte j = 'a' + (i + j) % 26.
func generate(p *pipeline, out chan<- batch, events uint64) (uint64, error) {
	// Every value is a window of one repeating alphabet: one copy per value.
	pattern := make([]byte, valueSize+26)
	for j := range pattern {
		pattern[j] = 'a' + byte(j%26)
	}
	var i uint64
	for i < events {
		n := min(events-i, batchSize)
		b := newBuilder(int(n), int(n)*valueSize)
		for k := i; k < i+n; k++ {
			start := k % 26
			b.data = append(b.data, pattern[start:start+valueSize]...)
			b.end()
		}
		if !p.send(out, b.batch()) {
			return i, nil
		}
		i += n
	}
	return events, nil
}

// expectedValue is the value the sink must see as event i.
func expectedValue(i uint64, upper bool) []byte {
	v := make([]byte, valueSize)
	for j := range v {
		v[j] = 'a' + byte((i+uint64(j))%26)
		if upper {
			v[j] -= 'a' - 'A'
		}
	}
	return v
}

// readLog is W3's source: the log read repeat times, line by line. A line's value excludes its
// line ending ("\n" or "\r\n"); the log's last line has none, and ends with its copy.
func readLog(p *pipeline, out chan<- batch, path string, repeat uint64) (uint64, error) {
	var lines uint64
	b := newBuilder(batchSize, batchSize*128)
	for n := uint64(0); n < repeat; n++ {
		f, err := os.Open(path)
		if err != nil {
			return lines, err
		}
		s := bufio.NewScanner(f)
		s.Buffer(make([]byte, 64<<10), maxLine)
		for s.Scan() {
			b.data = append(b.data, s.Bytes()...)
			b.end()
			lines++
			if b.len() == batchSize {
				if !p.send(out, b.batch()) {
					f.Close()
					return lines, nil
				}
				b = newBuilder(batchSize, batchSize*128)
			}
		}
		f.Close()
		if err := s.Err(); err != nil {
			return lines, fmt.Errorf("%s, copy %d, after line %d: %v", path, n+1, lines, err)
		}
	}
	if b.len() > 0 {
		p.send(out, b.batch())
	}
	return lines, nil
}

func passthrough(in batch) (batch, int) { return in, 0 }

// uppercase copies every value with its ASCII letters upper-cased.
func uppercase(in batch) (batch, int) {
	size := 0
	for _, v := range in {
		size += len(v)
	}
	b := newBuilder(len(in), size)
	for _, v := range in {
		start := len(b.data)
		b.data = append(b.data, v...)
		upper := b.data[start:]
		for i, c := range upper {
			if 'a' <= c && c <= 'z' {
				upper[i] = c - ('a' - 'A')
			}
		}
		b.end()
	}
	return b.batch(), 0
}

// parseStep turns each sshd line into its JSON object; a line that does not match is rejected.
func parseStep(in batch) (batch, int) {
	size := 0
	for _, v := range in {
		size += len(v)
	}
	// JSON adds keys and quotes: room for them, so that the buffer rarely grows.
	b := newBuilder(len(in), size*2)
	rejects := 0
	for _, line := range in {
		var ok bool
		if b.data, ok = parseInto(b.data, line); ok {
			b.end()
		} else {
			rejects++
		}
	}
	return b.batch(), rejects
}

// filterStep keeps the events whose msg records an authentication failure.
func filterStep(in batch) (batch, int) {
	// Kept values move to the front of the same slice: nothing is copied.
	out := in[:0]
	rejects := 0
	for _, v := range in {
		keep, ok := keepEvent(v)
		switch {
		case !ok:
			rejects++
		case keep:
			out = append(out, v)
		}
	}
	return out, rejects
}

// redactStep replaces the IPv4 addresses in each event's msg with <ip>.
func redactStep(in batch) (batch, int) {
	size := 0
	for _, v := range in {
		size += len(v)
	}
	// An address (7 bytes or more) becomes 4: the output is never longer.
	b := newBuilder(len(in), size)
	rejects := 0
	for _, v := range in {
		var ok bool
		if b.data, ok = redactInto(b.data, v); ok {
			b.end()
		} else {
			rejects++
		}
	}
	return b.batch(), rejects
}

var months = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// The length of `MON DD HH:MM:SS`.
const tsLen = 15

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseInto appends the JSON object of a line `MON DD HH:MM:SS HOST PROC[PID]: MESSAGE` to
// out; on a line of another shape, or one that is not UTF-8, it returns out as it was and false.
func parseInto(out, line []byte) ([]byte, bool) {
	if !utf8.Valid(line) || len(line) < tsLen+1 || !timestamp(line[:tsLen]) || line[tsLen] != ' ' {
		return out, false
	}
	rest := line[tsLen+1:]
	i := bytes.IndexByte(rest, ' ')
	if i <= 0 {
		return out, false // no space after HOST, or HOST empty
	}
	host := rest[:i]
	rest = rest[i+1:]
	i = bytes.IndexByte(rest, ' ')
	if i < 0 {
		return out, false
	}
	tag, msg := rest[:i], rest[i+1:]
	if !bytes.HasSuffix(tag, []byte("]:")) {
		return out, false
	}
	tag = tag[:len(tag)-2]
	i = bytes.IndexByte(tag, '[')
	if i <= 0 {
		return out, false // no `[`, or PROC empty
	}
	proc := tag[:i]
	pid, ok := parseUint(tag[i+1:])
	if !ok {
		return out, false
	}
	return appendObject(out, line[:tsLen], host, proc, pid, msg), true
}

// timestamp checks `MON DD HH:MM:SS`, the day `DD` or ` D`. Digits are not range-checked.
func timestamp(ts []byte) bool {
	month := false
	for _, m := range months {
		if string(ts[:3]) == m {
			month = true
			break
		}
	}
	if !month || ts[3] != ' ' || !(ts[4] == ' ' || isDigit(ts[4])) || !isDigit(ts[5]) || ts[6] != ' ' {
		return false
	}
	for i, c := range ts[7:] {
		if i == 2 || i == 5 {
			if c != ':' {
				return false
			}
		} else if !isDigit(c) {
			return false
		}
	}
	return true
}

// parseUint reads a non-empty run of ASCII digits that fits a uint64.
func parseUint(digits []byte) (uint64, bool) {
	if len(digits) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range digits {
		if !isDigit(c) {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// appendObject appends the compact object {"ts":…,"host":…,"proc":…,"pid":N,"msg":…}.
func appendObject(out, ts, host, proc []byte, pid uint64, msg []byte) []byte {
	out = append(out, `{"ts":"`...)
	out = appendEscaped(out, ts)
	out = append(out, `","host":"`...)
	out = appendEscaped(out, host)
	out = append(out, `","proc":"`...)
	out = appendEscaped(out, proc)
	out = append(out, `","pid":`...)
	out = strconv.AppendUint(out, pid, 10)
	out = append(out, `,"msg":"`...)
	out = appendEscaped(out, msg)
	return append(out, `"}`...)
}

const hex = "0123456789abcdef"

// appendEscaped appends a JSON string's content: `"` and `\` behind a backslash, the control
// characters as \b \t \n \f \r or \u00xx (lower-case hex), every other byte (DEL and
// non-ASCII included) as it is. (encoding/json would also escape <, >, &, U+2028 and U+2029.)
func appendEscaped(out, s []byte) []byte {
	for {
		i := nextSpecial(s)
		out = append(out, s[:i]...)
		if i == len(s) {
			return out
		}
		switch c := s[i]; c {
		case '"', '\\':
			out = append(out, '\\', c)
		case '\b':
			out = append(out, '\\', 'b')
		case '\t':
			out = append(out, '\\', 't')
		case '\n':
			out = append(out, '\\', 'n')
		case '\f':
			out = append(out, '\\', 'f')
		case '\r':
			out = append(out, '\\', 'r')
		default:
			out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		s = s[i+1:]
	}
}

// plainMsg finds msg's text in v when v is exactly the compact object parseInto writes and
// none of its strings needed an escape: then the text is a slice of v, and writing the object
// back gives v again. Otherwise ok is false and v is read with encoding/json.
func plainMsg(v []byte) (start, end int, ok bool) {
	at := 0
	for _, key := range [...]string{`{"ts":"`, `","host":"`, `","proc":"`} {
		if at = after(v, at, key); at < 0 {
			return 0, 0, false
		}
		if at = stringEnd(v, at); at < 0 {
			return 0, 0, false
		}
	}
	if at = after(v, at, `","pid":`); at < 0 {
		return 0, 0, false
	}
	digits := 0
	for at+digits < len(v) && isDigit(v[at+digits]) {
		digits++
	}
	pid := v[at : at+digits]
	if _, fits := parseUint(pid); !fits || (len(pid) > 1 && pid[0] == '0') {
		return 0, 0, false
	}
	if start = after(v, at+digits, `,"msg":"`); start < 0 {
		return 0, 0, false
	}
	if end = stringEnd(v, start); end < 0 || string(v[end:]) != `"}` {
		return 0, 0, false
	}
	return start, end, true
}

// after is the position after key if v has it at at, else -1.
func after(v []byte, at int, key string) int {
	if at > len(v) || !bytes.HasPrefix(v[at:], []byte(key)) {
		return -1
	}
	return at + len(key)
}

// stringEnd is the position of the quote that ends a string starting at start, if the string
// has no backslash, no control character and is UTF-8; else -1.
func stringEnd(v []byte, start int) int {
	i := start + nextSpecial(v[start:])
	if i >= len(v) || v[i] != '"' {
		return -1
	}
	if !ascii(v[start:i]) && !utf8.Valid(v[start:i]) {
		return -1
	}
	return i
}

// Eight copies of a byte.
func splat(b byte) uint64 { return uint64(b) * 0x0101010101010101 }

var (
	ones  = splat(0x01)
	highs = splat(0x80)
)

// specialBytes flags the top bit of every byte of x that is `"`, `\` or a control character.
// A flag can be wrong only above a byte rightly flagged (a borrow runs upwards), so the lowest
// one is always right.
func specialBytes(x uint64) uint64 {
	zero := func(v uint64) uint64 { return (v - ones) &^ v & highs }
	return zero(x^splat('"')) | zero(x^splat('\\')) | ((x - splat(0x20)) &^ x & highs)
}

// nextSpecial is the index of the first `"`, `\` or control character of s, or len(s): the
// strings are most of a value, so they are scanned eight bytes at a time.
func nextSpecial(s []byte) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if f := specialBytes(binary.LittleEndian.Uint64(s[i:])); f != 0 {
			return i + bits.TrailingZeros64(f)/8
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' || c < 0x20 {
			return i
		}
	}
	return len(s)
}

// ascii says whether s is all ASCII, eight bytes at a time.
func ascii(s []byte) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if binary.LittleEndian.Uint64(s[i:])&highs != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// patterns mark an authentication failure in msg; matching is case-sensitive.
var patterns = [...][]byte{
	[]byte("Failed password"),
	[]byte("Invalid user"),
	[]byte("authentication failure"),
	[]byte("POSSIBLE BREAK-IN ATTEMPT"),
}

func authFailure(msg []byte) bool {
	for _, p := range patterns {
		if bytes.Contains(msg, p) {
			return true
		}
	}
	return false
}

// keepEvent says whether to keep an event (keep) or reject it (!ok): its value must be a JSON
// object with a string msg.
func keepEvent(v []byte) (keep, ok bool) {
	if start, end, plain := plainMsg(v); plain {
		return authFailure(v[start:end]), true
	}
	if !isObject(v) {
		return false, false
	}
	var m struct {
		Msg *string `json:"msg"`
	}
	if err := json.Unmarshal(v, &m); err != nil || m.Msg == nil {
		return false, false
	}
	return authFailure([]byte(*m.Msg)), true
}

// isObject: the first byte that is not white space opens an object.
func isObject(v []byte) bool {
	t := bytes.TrimLeft(v, " \t\r\n")
	return len(t) > 0 && t[0] == '{'
}

// redactInto appends the object with every IPv4 address in msg replaced by <ip>; a value
// that is not the object parse writes (keys ts, host, proc, pid, msg) is rejected, and out
// returned as it was.
func redactInto(out, v []byte) ([]byte, bool) {
	if start, end, plain := plainMsg(v); plain {
		out = append(out, v[:start]...)
		out = redactIPv4(out, v[start:end])
		return append(out, v[end:]...), true
	}
	if !isObject(v) {
		return out, false
	}
	var r struct {
		Ts   *string `json:"ts"`
		Host *string `json:"host"`
		Proc *string `json:"proc"`
		Pid  *uint64 `json:"pid"`
		Msg  *string `json:"msg"`
	}
	d := json.NewDecoder(bytes.NewReader(v))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil || r.Ts == nil || r.Host == nil || r.Proc == nil || r.Pid == nil || r.Msg == nil {
		return out, false
	}
	if _, err := d.Token(); err != io.EOF {
		return out, false // something after the object
	}
	msg := redactIPv4(nil, []byte(*r.Msg))
	return appendObject(out, []byte(*r.Ts), []byte(*r.Host), []byte(*r.Proc), *r.Pid, msg), true
}

// redactIPv4 appends text with every IPv4 address replaced by <ip>: four dot-joined groups of
// 1 to 3 digits, each at most 255, not preceded or followed by a digit or a dot. So an address
// is a whole maximal run of digits and dots holding a dot: the search goes from dot to dot,
// and each run around one is replaced whole or kept.
func redactIPv4(out, text []byte) []byte {
	copied, search := 0, 0
	for {
		found := bytes.IndexByte(text[search:], '.')
		if found < 0 {
			break
		}
		dot := search + found
		start := dot
		for start > 0 && isDigitOrDot(text[start-1]) {
			start--
		}
		end := dot + 1
		for end < len(text) && isDigitOrDot(text[end]) {
			end++
		}
		if isIPv4(text[start:end]) {
			out = append(out, text[copied:start]...)
			out = append(out, "<ip>"...)
			copied = end
		}
		search = end
	}
	return append(out, text[copied:]...)
}

func isDigitOrDot(c byte) bool { return isDigit(c) || c == '.' }

// isIPv4: a run of digits and dots that is exactly four groups of 1 to 3 digits, each at most
// 255.
func isIPv4(run []byte) bool {
	groups, digits, n := 0, 0, 0
	for i := 0; i <= len(run); i++ {
		if i < len(run) && run[i] != '.' {
			digits++
			n = n*10 + int(run[i]-'0')
			if digits > 3 {
				return false
			}
			continue
		}
		groups++
		if groups > 4 || digits == 0 || n > 255 {
			return false
		}
		digits, n = 0, 0
	}
	return groups == 4
}
