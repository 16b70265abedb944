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

    def test_rejects_an_empty_line(self):
        outputs, counts, failures = weir.run(app, [b"Failed password for x", b"", b"y"])
        self.assertEqual([e.value for e in outputs], [b"Failed password for x"])
        self.assertEqual(counts, [1, 0, 0])
        self.assertEqual(failures, [(1, "reject", "empty line")])

    def test_marker(self):
        outputs, _, _ = weir.run(app, [b"Accepted x", b"y"], [("marker", "Accepted")])
        self.assertEqual([e.value for e in outputs], [b"Accepted x"])


if __name__ == "__main__":
    unittest.main()
