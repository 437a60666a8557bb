"""Small-number suppression, primary and secondary, and the figures derived from counts."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from insights.domain.dimensions import Dimension
from insights.domain.figures import NEEDS, SERVICE_LEVELS, RawRow, assemble
from insights.domain.suppression import TOTAL, RowRelation, suppressed_cells


def hidden(rows, total, **kw):
    return suppressed_cells(rows, total, columns=["n"], additive=["n"], threshold=5, **kw)


def test_small_counts_are_hidden_and_zero_is_shown():
    assert hidden([{"n": 0}, {"n": 12}], {"n": 12}) == set()
    assert hidden([{"n": 4}, {"n": 12}, {"n": 20}], {"n": 36}) == {(0, "n"), (1, "n")}


def test_two_small_counts_protect_each_other():
    assert hidden([{"n": 2}, {"n": 3}, {"n": 20}], {"n": 25}) == {(0, "n"), (1, "n")}


def test_a_small_total_hides_itself():
    assert hidden([{"n": 3}, {"n": 0}], {"n": 3}) == {(0, "n"), (TOTAL, "n")}


def test_a_relation_within_a_row_is_protected_too():
    rows = [{"completed": 9, "a": 6, "b": 3}]
    cells = suppressed_cells(rows, {"completed": 9, "a": 6, "b": 3}, columns=["completed", "a", "b"],
                             additive=["completed", "a", "b"],
                             relations=[RowRelation(("completed",), ("a", "b"))], threshold=5)
    assert (0, "b") in cells and (0, "a") in cells  # b = completed - a otherwise


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=1, max_size=6))
def test_no_hidden_count_can_be_worked_out_from_its_column(values):
    rows = [{"n": v} for v in values]
    total = {"n": sum(values)}
    cells = hidden(rows, total)
    column = [*range(len(rows)), TOTAL]
    hidden_here = [c for c in column if (c, "n") in cells]
    # Every small count is hidden, and never alone in the column (it would be total - the rest).
    assert all((i, "n") in cells for i, v in enumerate(values) if 0 < v < 5)
    assert len(hidden_here) != 1
    assert all(values[i] != 0 for i in hidden_here if i != TOTAL)


def test_an_answer_names_what_it_hid_and_nulls_rates_drawn_from_it():
    raw = [RawRow(("NACRO",), {"allocated": 20, "acknowledged_on_time": 18, "acknowledged_late": 2,
                                "responded_on_time": 20, "responded_late": 0, "deadlines_missed": 0,
                                "accepted": 17, "declined": 3, "outcome_achieved": 6,
                                "outcome_partially_achieved": 0, "outcome_not_achieved": 0},
                  {"working_days_to_acknowledge": {1: 18, 4: 2}}),
           RawRow(("IXION",), {"allocated": 30, "acknowledged_on_time": 25, "acknowledged_late": 5,
                               "responded_on_time": 30, "accepted": 20, "declined": 10,
                               "outcome_achieved": 5, "outcome_partially_achieved": 5},
                  {"working_days_to_acknowledge": {2: 30}})]
    rows, total = assemble(SERVICE_LEVELS, [Dimension.PROVIDER], raw, 5)
    ixion, nacro = rows  # sorted by provider
    assert nacro["acknowledged_late"] is None and "acknowledged_late" in nacro["suppressed"]
    assert nacro["acceptance_rate"] is None  # 3 declines
    assert nacro["median_working_days_to_acknowledge"] is None
    assert nacro["achievement_score"] == 1.0
    # Declines are shown (with their reasons): IXION's 10 would give NACRO's 3 away from the
    # total, so it is hidden too, and the acceptance rate drawn from it.
    assert nacro["declined"] is None and ixion["declined"] is None and total["declined"] == 13
    assert ixion["acceptance_rate"] is None and ixion["achievement_score"] == 0.75
    assert ixion["acknowledged_late"] is None  # secondary: else 7 - 5 gives NACRO's 2 away
    assert total["acknowledged_late"] == 7 and total["median_working_days_to_acknowledge"] == 2.0


def test_one_row_when_not_broken_down():
    rows, total = assemble(NEEDS, [], [], 5)
    assert rows == [total] and total["submitted"] == 0 and total["suppressed"] == []


def test_every_combination_of_small_counts_in_a_row_is_safe():
    for a, p, n in itertools.product([0, 2, 6], repeat=3):
        counts = {"completed": a + p + n, "outcome_achieved": a,
                  "outcome_partially_achieved": p, "outcome_not_achieved": n}
        _, total = assemble(NEEDS, [], [RawRow((), counts)], 5)
        shown = [total[k] for k in ("outcome_achieved", "outcome_partially_achieved",
                                    "outcome_not_achieved")]
        hidden_count = sum(1 for v in shown if v is None) + (total["completed"] is None)
        assert hidden_count != 1


def test_declines_by_reason_code_are_suppressed_with_the_declines_they_add_up_to():
    def row(provider: str, declined: int, **reasons: int) -> RawRow:
        counts = {"allocated": 100, "accepted": 50, "declined": declined}
        counts |= {f"declined_{reason}": n for reason, n in reasons.items()}
        return RawRow((provider,), counts)

    raw = [row("NACRO", 12, capacity=9, risk_too_high=3),
           row("IXION", 20, capacity=14, not_eligible=6)]
    rows, total = assemble(SERVICE_LEVELS, [Dimension.PROVIDER], raw, 5)
    ixion, nacro = rows
    assert [c for c in SERVICE_LEVELS.counts if c.startswith("declined_")] == [
        "declined_capacity", "declined_not_eligible", "declined_risk_too_high",
        "declined_unable_to_engage", "declined_duplicate", "declined_other"]
    # NACRO's 3 for risk is small; its 9 for capacity would give it away (12 - 9): hidden too.
    assert nacro["declined_risk_too_high"] is None and nacro["declined_capacity"] is None
    assert set(nacro["suppressed"]) >= {"declined_risk_too_high", "declined_capacity"}
    assert nacro["declined"] == 12 and nacro["declined_other"] == 0  # a true zero is shown
    # The total of capacity (23) would give NACRO's 9 away from IXION's 14: one of them goes,
    # and then what IXION's row would give away of it.
    assert None in (total["declined_capacity"], ixion["declined_capacity"])
    assert ixion["declined"] == 20 and total["declined"] == 32
    assert total["declined_risk_too_high"] is None  # 3 in all: small
    reasons = [c for c in SERVICE_LEVELS.counts if c.startswith("declined")]
    for shown in (*rows, total):  # no row has exactly one hidden figure to work out
        assert sum(shown[c] is None for c in reasons) != 1, shown
    for column in reasons:  # nor any column
        assert sum(r[column] is None for r in (*rows, total)) != 1, column
