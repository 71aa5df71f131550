"""No function in kastro/ or monitors/ above cyclomatic complexity 20 (radon's measure):
small enough to review, and to test branch by branch."""

from pathlib import Path

from radon.complexity import cc_visit

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 20


def test_every_function_is_small_enough_to_review():
    too_big = []
    for path in sorted([*ROOT.glob("kastro/**/*.py"), *ROOT.glob("monitors/**/*.py")]):
        for block in cc_visit(path.read_text(encoding="utf-8")):
            if block.complexity > LIMIT:
                too_big.append(
                    f"{path.relative_to(ROOT)}:{block.lineno} {block.name} {block.complexity}"
                )
    assert not too_big, "split these functions:\n" + "\n".join(too_big)
