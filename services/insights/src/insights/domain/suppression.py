"""Small-number suppression (statistical disclosure control), DOMAIN.md "Small numbers".

A count from 1 to `threshold - 1` is never shown (primary suppression); nor any count from
which a suppressed one could be worked out exactly from the same answer (secondary). An
answer's counts are tied by linear relations: in each additive column the rows add up to the
total, and within a row some figures add up to others (completions = the three outcomes). A
relation with exactly one hidden count would reveal it; so the smallest non-zero count shown
in that relation is hidden too, and this repeats until no relation has exactly one hidden
count. Zero is always shown: it is a true zero and reveals nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# A cell: (row index, column); the total is the row index -1.
TOTAL = -1
Cell = tuple[int, str]


@dataclass(frozen=True)
class RowRelation:
    """Within every row: sum(left) == sum(right)."""

    left: tuple[str, ...]
    right: tuple[str, ...]


def suppressed_cells(
    rows: Sequence[dict[str, int]],
    total: dict[str, int],
    *,
    columns: Sequence[str],
    additive: Sequence[str],
    relations: Sequence[RowRelation] = (),
    threshold: int,
) -> set[Cell]:
    """The cells to hide: primary ones, then what secondary suppression adds."""

    def value(cell: Cell) -> int:
        row, column = cell
        return (total if row == TOTAL else rows[row]).get(column, 0)

    indices = [*range(len(rows)), TOTAL]
    hidden: set[Cell] = {
        (row, column) for row in indices for column in columns if 0 < value((row, column)) < threshold
    }
    groups: list[list[Cell]] = []
    for column in additive:
        groups.append([(row, column) for row in indices])
    for relation in relations:
        for row in indices:
            groups.append([(row, c) for c in (*relation.left, *relation.right)])

    changed = True
    while changed:
        changed = False
        for group in groups:
            if sum(1 for cell in group if cell in hidden) != 1:
                continue
            shown = [cell for cell in group if cell not in hidden and value(cell) > 0]
            if not shown:
                continue
            # The smallest, then the latest row (the total last of all), so the pattern is stable.
            victim = min(shown, key=lambda cell: (value(cell), cell[0] == TOTAL, cell[0], cell[1]))
            hidden.add(victim)
            changed = True
    return hidden


def is_small(count: int, threshold: int) -> bool:
    return 0 < count < threshold
