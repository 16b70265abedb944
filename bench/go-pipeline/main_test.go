package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// The cases of the Rust stages' own tests (plugins/sshd-parse, auth-filter, redact-ip): the Go
// stages must give the same bytes and reject the same values.

func parse(line string) (string, bool) {
	out, ok := parseInto([]byte("before"), []byte(line))
	if !ok {
		if string(out) != "before" {
			panic("a rejected line changed the buffer")
		}
		return "", false
	}
	return strings.TrimPrefix(string(out), "before"), true
}

func TestParse(t *testing.T) {
	cases := []struct{ line, json string }{
		{"Dec 10 06:55:46 LabSZ sshd[24200]: reverse mapping checking getaddrinfo for ns.marryaldkfaczcz.com [173.234.31.186] failed - POSSIBLE BREAK-IN ATTEMPT!",
			`{"ts":"Dec 10 06:55:46","host":"LabSZ","proc":"sshd","pid":24200,"msg":"reverse mapping checking getaddrinfo for ns.marryaldkfaczcz.com [173.234.31.186] failed - POSSIBLE BREAK-IN ATTEMPT!"}`},
		{"Dec  1 00:00:01 h sshd[1]: x", `{"ts":"Dec  1 00:00:01","host":"h","proc":"sshd","pid":1,"msg":"x"}`},
		{"Jan 02 03:04:05 h sshd[7]: a \"b\" c\\d\te\x01f\r é\x7f\b\f\n\x1f",
			`{"ts":"Jan 02 03:04:05","host":"h","proc":"sshd","pid":7,"msg":"a \"b\" c\\d\te\u0001f\r é` + "\x7f" + `\b\f\n\u001f"}`},
		{"Jan 02 03:04:05 h p[007]:  two", `{"ts":"Jan 02 03:04:05","host":"h","proc":"p","pid":7,"msg":" two"}`},
		{"Jan 02 03:04:05 h p[18446744073709551615]: ", `{"ts":"Jan 02 03:04:05","host":"h","proc":"p","pid":18446744073709551615,"msg":""}`},
		{"Jan 02 03:04:05 h\"1 p\\[7]: <&>\u2028", `{"ts":"Jan 02 03:04:05","host":"h\"1","proc":"p\\","pid":7,"msg":"<&>` + "\u2028" + `"}`},
	}
	for _, c := range cases {
		if got, ok := parse(c.line); !ok || got != c.json {
			t.Errorf("%q: got %q (%v), want %q", c.line, got, ok, c.json)
		}
	}
	rejected := []string{
		"",
		"hello world, this is not syslog",
		"Dec 1 06:55:46 LabSZ sshd[1]: x",
		"Dec 10 06:55-46 LabSZ sshd[1]: x",
		"Dec 10 06:55:46LabSZ sshd[1]: x",
		"Dec 10 06:55:46  sshd[1]: x",
		"Dec 10 06:55:46 LabSZ sshd: x",
		"Dec 10 06:55:46 LabSZ sshd[1]:",
		"Dec 10 06:55:46 LabSZ [1]: x",
		"Dec 10 06:55:46 LabSZ sshd[1a]: x",
		"Dec 10 06:55:46 LabSZ sshd[]: x",
		"Dec 10 06:55:46 LabSZ sshd[18446744073709551616]: x",
		"Dec 10 06:55:46 LabSZ sshd[1]: \xff",
		"Dec 10 06:55:46",
		"Dec 10 06:55:46 ",
	}
	for _, line := range rejected {
		if got, ok := parse(line); ok {
			t.Errorf("%q: accepted as %q", line, got)
		}
	}
}

func object(msg string) []byte {
	return []byte(`{"ts":"Dec 10 06:55:46","host":"LabSZ","proc":"sshd","pid":1,"msg":` + msg + `}`)
}

func TestFilter(t *testing.T) {
	for _, p := range patterns {
		if keep, ok := keepEvent(object(`"x ` + string(p) + ` y"`)); !keep || !ok {
			t.Errorf("%s: dropped", p)
		}
	}
	for _, msg := range []string{`"Accepted password for root"`, `"failed password for root"`, `""`} {
		if keep, ok := keepEvent(object(msg)); keep || !ok {
			t.Errorf("%s: kept or rejected", msg)
		}
	}
	// Only the unescaped text contains "Invalid user".
	if keep, ok := keepEvent(object(`"Invalid\u0020user admin"`)); !keep || !ok {
		t.Error("the escaped message is not read unescaped")
	}
	if keep, ok := keepEvent([]byte(`{"msg":"Failed password"}`)); !keep || !ok {
		t.Error("another object is not read")
	}
	for _, v := range []string{"", "Dec 10 06:55:46 LabSZ sshd[1]: Invalid user", `["Invalid user"]`,
		`{"message":"Invalid user"}`, `{"msg":42}`, `{"msg":"Invalid user"} trailing`} {
		if _, ok := keepEvent([]byte(v)); ok {
			t.Errorf("%q: not rejected", v)
		}
	}
}

func TestRedact(t *testing.T) {
	cases := [][2]string{
		{"1.2.3.4", "<ip>"},
		{"from 173.234.31.186 port 38926 ssh2", "from <ip> port 38926 ssh2"},
		{"[173.234.31.186] failed", "[<ip>] failed"},
		{"0.0.0.0 255.255.255.255", "<ip> <ip>"},
		{"1.2.3.4:22", "<ip>:22"},
		{"a1.2.3.4", "a<ip>"},
		{"x1.2.3.4y", "x<ip>y"},
		{"001.002.003.004", "<ip>"},
		{"1.2.3.4,5.6.7.8", "<ip>,<ip>"},
		{"256.1.1.1", "256.1.1.1"},
		{"1.1.1.256", "1.1.1.256"},
		{"1.2.3.4.5", "1.2.3.4.5"},
		{"1.2.3.4.", "1.2.3.4."},
		{".1.2.3.4", ".1.2.3.4"},
		{"11.2.3.4", "<ip>"},
		{"1111.2.3.4", "1111.2.3.4"},
		{"1.2.3.4444", "1.2.3.4444"},
		{"1..2.3.4", "1..2.3.4"},
		{"1.2.3", "1.2.3"},
		{"é1.2.3.4é", "é<ip>é"},
		{"no address here", "no address here"},
		{"", ""},
	}
	for _, c := range cases {
		if got := string(redactIPv4(nil, []byte(c[0]))); got != c[1] {
			t.Errorf("%q: got %q, want %q", c[0], got, c[1])
		}
	}
	redact := func(v string) (string, bool) {
		out, ok := redactInto(nil, []byte(v))
		return string(out), ok
	}
	in := `{"ts":"Dec 10 06:55:46","host":"10.0.0.1","proc":"sshd","pid":24200,"msg":"Failed password for root from 1.2.3.4 port 22 ssh2"}`
	want := `{"ts":"Dec 10 06:55:46","host":"10.0.0.1","proc":"sshd","pid":24200,"msg":"Failed password for root from <ip> port 22 ssh2"}`
	if got, ok := redact(in); !ok || got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	in = ` { "msg" : "a \"q\" \\ \u0001 1.2.3.4" , "pid" : 7, "proc":"p", "host":"h", "ts":"Dec  1 00:00:01" } `
	want = `{"ts":"Dec  1 00:00:01","host":"h","proc":"p","pid":7,"msg":"a \"q\" \\ \u0001 <ip>"}`
	if got, ok := redact(in); !ok || got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, v := range []string{
		"Dec 10 06:55:46 LabSZ sshd[1]: 1.2.3.4",
		`["Dec 10 06:55:46","h","p",1,"m"]`,
		`{"ts":"Dec 10 06:55:46","host":"h","proc":"p","pid":1}`,
		`{"ts":"Dec 10 06:55:46","host":"h","proc":"p","pid":"1","msg":"m"}`,
		`{"ts":"Dec 10 06:55:46","host":"h","proc":"p","pid":1,"msg":"m","x":1}`,
		`{"ts":"Dec 10 06:55:46","host":"h","proc":"p","pid":1,"msg":"m"}{}`,
	} {
		if got, ok := redact(v); ok {
			t.Errorf("%q: accepted as %q", v, got)
		}
	}
}

// Every byte that needs an escape, at every position of a word and of the tail.
func TestEscapesWhereverTheyAre(t *testing.T) {
	for c := 0; c < 0x80; c++ {
		for pos := 0; pos < 19; pos++ {
			s := []byte("abcdefghijklmnopqrs")
			s[pos] = byte(c)
			got := string(appendEscaped(nil, s))
			var want string
			switch {
			case c == '"' || c == '\\':
				want = `\` + string(rune(c))
			case c < 0x20:
				want = map[int]string{8: `\b`, 9: `\t`, 10: `\n`, 12: `\f`, 13: `\r`}[c]
				if want == "" {
					want = `\u00` + string(hex[c>>4]) + string(hex[c&0xf])
				}
			default:
				want = string(rune(c))
			}
			want = string(s[:pos]) + want + string(s[pos+1:])
			if got != want {
				t.Errorf("%#x at %d: got %q, want %q", c, pos, got, want)
			}
		}
	}
}

func TestReadsEveryLineEnding(t *testing.T) {
	dir := t.TempDir()
	log := dir + "/log"
	if err := writeFile(log, "a\r\nb\n\nc\r"); err != nil {
		t.Fatal(err)
	}
	p := newPipeline()
	out := make(chan batch, 10)
	n, err := readLog(p, out, log, 2)
	close(out)
	if err != nil || n != 8 {
		t.Fatalf("%d lines, %v", n, err)
	}
	var got [][]byte
	for b := range out {
		got = append(got, b...)
	}
	if want := []byte("a b  c a b  c"); !bytes.Equal(bytes.Join(got, []byte(" ")), want) {
		t.Errorf("got %q", got)
	}
}

func writeFile(path, text string) error { return os.WriteFile(path, []byte(text), 0o644) }
