"""Output that a pipe gets whole: plain-text tables (aligned columns, one line per row,
or markdown) and a rich Console that does not wrap at 80 columns off a terminal."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console

PIPE_WIDTH = 250  # columns of a console that writes to a pipe or a file


def console(*, stderr: bool = True) -> Console:
    """A rich Console; on a pipe or file it is PIPE_WIDTH wide instead of 80, so log
    lines, addresses and table rows are not wrapped (markdown tables are written with
    plain ``print``/``write``, never through rich)."""
    c = Console(stderr=stderr)
    if not c.is_terminal:
        c = Console(stderr=stderr, width=PIPE_WIDTH)
    return c


def eta(elapsed: float, done: int, total: int | None) -> str:
    """``"  eta 1m05s"`` once a round is done and a round limit is set: the time per
    round so far times the rounds left ("" otherwise)."""
    if not total or done < 1 or done >= total:
        return ""
    left = int(elapsed / done * (total - done))
    return f"  eta {left // 3600}h{left % 3600 // 60:02d}m" if left >= 3600 else \
        f"  eta {left // 60}m{left % 60:02d}s"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *,
               markdown: bool = False) -> str:
    """The table as text ending in a newline; numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r]
                                           for r in rows]
    if markdown:
        lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(r) + " |" for r in cells[1:]]
        return "\n".join(lines) + "\n"
    widths = [max(len(r[k]) for r in cells) for k in range(len(headers))]
    numeric = [all(_is_number(r[k]) for r in cells[1:]) and len(cells) > 1
               for k in range(len(headers))]
    out = []
    for r in cells:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric,
                                                                         strict=True)]
        out.append("  ".join(parts).rstrip())
    return "\n".join(out) + "\n"


def _is_number(text: str) -> bool:
    if text == "-":
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True
