"""The stage's golden test: every line of golden/input.txt is an input event's value, every
line of golden/output.txt an output event's value, in order: one per input, then the final
counts the timers emit at the end of the input.

    python3 -m unittest test_app      (with weir.py beside app.py, as `weir plugin new` leaves it)
"""

import pathlib
import unittest

import app
import weir

HERE = pathlib.Path(__file__).parent


def lines(name):
    return (HERE / "golden" / name).read_bytes().splitlines()


class Golden(unittest.TestCase):
    def test_golden(self):
        outputs, counts, failures = weir.run(app, lines("input.txt"))
        self.assertEqual(failures, [])
        self.assertEqual(counts, [1] * len(counts))
        self.assertEqual([e.value for e in outputs], lines("output.txt"))

    def test_counts_by_key_and_keeps_the_event(self):
        inputs = [weir.Event(b"x", key=b"k", headers=[("h", b"v")], timestamp=1000 + i) for i in range(3)]
        outputs, _, _ = weir.run(app, inputs)
        self.assertEqual([e.value for e in outputs], [b"k,1", b"k,2", b"k,3", b"k,3,final"])
        self.assertEqual([e.timestamp for e in outputs[:3]], [1000, 1001, 1002])
        self.assertEqual(outputs[0].headers, [("h", b"v")])

    def test_describe(self):
        self.assertEqual(app.NAME, "{{name}}")
        weir.init(app, [])


if __name__ == "__main__":
    unittest.main()
