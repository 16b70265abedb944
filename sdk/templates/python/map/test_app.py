"""The stage's golden test: every line of golden/input.txt is an input event's value, every
line of golden/output.txt an output event's value, in order.

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
        outputs, _counts, failures = weir.run(app, lines("input.txt"))
        self.assertEqual(failures, [])
        self.assertEqual([e.value for e in outputs], lines("output.txt"))

    def test_keeps_key_headers_and_timestamp(self):
        inputs = [
            weir.Event(v, key=b"k%d" % i, headers=[("h", b"v")], timestamp=1000 + i)
            for i, v in enumerate(lines("input.txt"))
        ]
        outputs, _counts, _failures = weir.run(app, inputs)
        for out in outputs:
            self.assertTrue(out.key.startswith(b"k"))
            self.assertEqual(out.headers, [("h", b"v")])
            self.assertEqual(out.timestamp, 1000 + int(out.key[1:]))

    def test_describe(self):
        self.assertEqual(app.NAME, "{{name}}")
        weir.init(app, [])  # the defaults of every declared setting are valid


if __name__ == "__main__":
    unittest.main()
