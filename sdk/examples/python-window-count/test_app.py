"""The window-count example's tests, natively: every line of golden/input.txt is an event
``key,time``; golden/output.txt is what 20-second tumbling windows make of them at the end of
the input, with 20 seconds of allowed lateness. Session, hopping and late events are checked against counts worked out here.

    sdk/python/test.sh sdk/examples/python-window-count
"""

import json
import pathlib
import unittest

import app
import weir

HERE = pathlib.Path(__file__).parent


def events(lines):
    out = []
    for line in lines:
        key, t = line.split(b",")
        out.append(weir.Event(b"", key=key, timestamp=int(t)))
    return out


def lines(name):
    return (HERE / "golden" / name).read_bytes().splitlines()


def counted(outputs):
    return {(v["window_start"], v["key"]): v["count"] for v in (json.loads(o.value) for o in outputs)}


class WindowCount(unittest.TestCase):
    def test_golden(self):
        outputs, counts, failures = weir.run(
            app, events(lines("input.txt")), [("size_ms", "20000")], allowed_lateness=20000
        )
        self.assertEqual(failures, [])
        self.assertEqual(counts, [0] * len(counts))
        self.assertEqual([o.value for o in outputs], lines("output.txt"))
        # Each window's event carries its end minus 1 ms and its key.
        for o in outputs:
            v = json.loads(o.value)
            self.assertEqual(o.key, v["key"].encode())
            self.assertEqual(o.timestamp, v["window_start"] + 20000 - 1)

    def test_sessions_merge(self):
        outputs, _, failures = weir.run(
            app, events(lines("input.txt")), [("window", "session"), ("gap_ms", "10000")],
            allowed_lateness=20000,
        )
        self.assertEqual(failures, [])
        want = {(1000, "a"): 2, (40000, "a"): 1, (2000, "b"): 3, (100000, "z"): 1}
        self.assertEqual(counted(outputs), want)

    def test_hopping(self):
        outputs, _, _ = weir.run(
            app,
            events(lines("input.txt")),
            [("window", "hopping"), ("size_ms", "20000"), ("slide_ms", "10000")],
            allowed_lateness=20000,
        )
        want = {}
        for line in lines("input.txt"):
            k, t = line.decode().split(",")
            last = int(t) - int(t) % 10000
            for s in (last - 10000, last):
                if s >= 0:
                    want[(s, k)] = want.get((s, k), 0) + 1
        self.assertEqual(counted(outputs), want)

    def test_late_and_untimed_events_fail(self):
        inputs = events([b"k,1000", b"k,61000", b"k,5000"]) + [weir.Event(b"x", key=b"k")]
        outputs, _, failures = weir.run(app, inputs)
        self.assertEqual(failures[0][:2], (2, "reject"))
        self.assertTrue(failures[0][2].startswith("late: "), failures[0][2])
        self.assertEqual(failures[1], (3, "reject", "the event has no timestamp: windows need event time"))
        self.assertEqual(counted(outputs), {(0, "k"): 1, (60000, "k"): 1})

    def test_describe(self):
        self.assertEqual(app.NAME, "python-window-count")
        with self.assertRaises(ValueError):
            weir.init(app, [("window", "sliding")])


if __name__ == "__main__":
    unittest.main()
