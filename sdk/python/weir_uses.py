"""Which of the host's ``state`` and ``time`` a stage's Python sources use: ``build.sh`` runs
it (under the build machine's CPython) to cut the contract's functions the stage never calls,
so that its component imports neither, and the host keeps no store for it.

    python3 weir_uses.py DIR        prints the used ones, space-separated: "state time", or ""

It reads the sources, it does not run them: a use is ``from weir import state`` (or
``time``, or ``*``), ``weir.state``/``weir.time`` through any name ``weir`` is imported as,
or any import of ``weir_window`` (windows keep their accumulators in state and close on
timers). The layer's own files and the tests (``test_*.py``) are not the stage's code.
"""

import ast
import pathlib
import sys

LAYER = {"weir.py", "weir_main.py", "weir_uses.py", "weir_window.py"}
# Folders that hold no stage code: the contract, golden files, a build's outputs.
SKIP = {"wit", "golden", "target", "__pycache__", "node_modules"}


def uses(tree):
    found = set()
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "weir":
                    aliases.add(a.asname or "weir")
                elif a.name == "weir_window":
                    found |= {"state", "time"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            if node.module == "weir_window":
                found |= {"state", "time"}
            elif node.module == "weir":
                for a in node.names:
                    if a.name == "*":
                        found |= {"state", "time"}
                    elif a.name in ("state", "time"):
                        found.add(a.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("state", "time")
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            found.add(node.attr)
    return found


def sources(root):
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in SKIP or part.startswith(".") for part in rel.parts[:-1]):
            continue
        if path.name in LAYER or path.name.startswith("test_"):
            continue
        yield path


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    found = set()
    for path in sources(root):
        found |= uses(ast.parse(path.read_text(), str(path)))
    print(" ".join(sorted(found)))


if __name__ == "__main__":
    main()
