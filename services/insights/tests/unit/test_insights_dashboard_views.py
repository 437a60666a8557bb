"""The dashboard's pure parts: the filter form, a figures answer turned into a table and its
chart, suppressed cells, and the sign-in's redirect and claims rules."""

from __future__ import annotations

from datetime import date

import pytest

from insights.web import charts
from insights.web.config import DashboardSettings
from insights.web.filters import parse_filters
from insights.web.pages import OVERVIEW, PAGES, PROVIDERS, TABLES, build_table
from insights.web.signin import PageError, claims_to_user, safe_next

TODAY = date(2026, 12, 7)
SECRET = "a-test-secret-of-at-least-thirty-two-characters"


def answer(rows, total, threshold=5):
    return {"suppression": {"threshold": threshold}, "rows": rows, "total": total}


DERIVED = {"median_working_days_to_acknowledge", "median_working_days_to_respond", "acceptance_rate",
           "achievement_score"}


def row(**values):
    """A row as the API answers it: a null count is named in `suppressed`, a null rate is not."""
    suppressed = [k for k, v in values.items() if v is None and k not in DERIVED]
    return {**values, "suppressed": suppressed}


# --- filters -------------------------------------------------------------------------------
def test_no_filters_means_the_365_days_up_to_today_and_every_area_of_the_caller():
    filters, errors = parse_filters([], allowed_areas=frozenset({"E08000029"}), today=TODAY)
    assert not errors
    assert (filters.date_from, filters.date_to) == (date(2025, 12, 8), TODAY)
    assert filters.areas == ()


def test_a_region_expands_and_areas_outside_the_callers_are_named():
    filters, errors = parse_filters(
        [("area", "west-midlands")], allowed_areas=frozenset({"E08000029", "E08000026"}), today=TODAY
    )
    assert filters.areas == ("E08000026", "E08000029")
    assert len(errors.forbidden_areas) == 5 and not errors


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ([("from", "2026-13-01")], "from"),
        ([("to", "yesterday")], "to"),
        ([("from", "2026-06-01"), ("to", "2026-05-01")], "from"),
        ([("from", "2019-01-01"), ("to", "2026-01-01")], "from"),
        ([("to", "0001-01-01")], "to"),
        ([("from", "9999-12-31")], "from"),
        ([("pathway", "housing")], "pathway"),
        ([("provider", "<script>")], "provider"),
        ([("area", "E99999999")], "area"),
    ],
)
def test_bad_filter_values_are_named_for_the_form(params, field):
    filters, errors = parse_filters(params, allowed_areas=None, today=TODAY)
    assert field in errors.messages
    assert filters.date_from <= filters.date_to


def test_filters_give_back_their_query_string():
    filters, _ = parse_filters(
        [("area", "E08000029"), ("from", "2026-01-01"), ("to", "2026-06-30"), ("pathway", "accommodation"),
         ("provider", "NACRO")], allowed_areas=None, today=TODAY,
    )
    assert filters.query() == (
        "area=E08000029&from=2026-01-01&to=2026-06-30&pathway=accommodation&provider=NACRO"
    )


# --- tables and charts ---------------------------------------------------------------------
def test_a_table_shows_counts_suppressed_cells_and_a_rate_worked_out_from_shown_counts():
    spec = TABLES["needs-by-pathway"][1]
    view = build_table(spec, answer(
        [row(pathway="health", submitted=12, allocated=10, unallocated=None),
         row(pathway="accommodation", submitted=40, allocated=30, unallocated=10)],
        row(submitted=52, allocated=40, unallocated=None),
    ), threshold=5)
    labels = [label for label, _ in view.rows]
    assert labels == ["Accommodation", "Health (mental and physical, neuro-diversity)"]  # vocabulary order
    accommodation = [c.text for c in view.rows[0][1]]
    assert accommodation == ["40", "30", "10", "75%"]
    health = [c.text for c in view.rows[1][1]]
    assert health == ["12", "10", "[c]", "[c]"]  # the rate would reveal the suppressed count
    assert view.suppressed and view.total is not None
    assert 'role="img"' in view.chart and "<title" in view.chart and "<desc" in view.chart
    unmet = build_table(TABLES["unmet-need-by-reason"][1], answer(
        [row(reason="no_service", unallocated=None), row(reason="sex", unallocated=9)],
        row(unallocated=None)), threshold=5)
    assert "[c]" in unmet.chart and unmet.chart.count("<rect") == 1  # a suppressed bar says so


def test_a_rate_with_nothing_to_divide_is_not_available():
    spec = TABLES["needs-by-pathway"][1]
    view = build_table(spec, answer([row(pathway="health", submitted=0, allocated=0, unallocated=0)],
                                    row(submitted=0, allocated=0, unallocated=0)), threshold=5)
    assert [c.text for c in view.rows[0][1]] == ["0", "0", "0", "[x]"]
    assert view.not_available


def test_a_two_dimension_answer_becomes_a_grid():
    spec = TABLES["needs-by-month-pathway"][1]
    view = build_table(spec, answer(
        [row(month="2026-02", pathway="health", submitted=7),
         row(month="2026-01", pathway="accommodation", submitted=None)],
        row(submitted=9),
    ), threshold=5)
    assert view.head == ["Month", "Accommodation", "Health"]
    assert [(label, [c.text for c in cells]) for label, cells in view.rows] == [
        ("Jan 2026", ["[c]", "0"]), ("Feb 2026", ["0", "7"]),
    ]


def test_provider_rates_from_the_api_show_c_when_their_counts_are_suppressed():
    spec = TABLES["response-times-by-provider"][1]
    view = build_table(spec, answer(
        [row(provider="NACRO", responded_on_time=None, responded_late=6, acknowledged_on_time=9,
             acknowledged_late=0, median_working_days_to_acknowledge=1.0,
             median_working_days_to_respond=None, acceptance_rate=None, achievement_score=None),
         row(provider=None, acknowledged_on_time=0, acknowledged_late=0, responded_on_time=0,
             responded_late=0, median_working_days_to_acknowledge=None,
             median_working_days_to_respond=None, acceptance_rate=None, achievement_score=None)],
        row(),
    ), threshold=5)
    nacro = dict(zip(view.head[1:], [c.text for c in view.rows[0][1]], strict=True))
    assert nacro["Median days to acknowledge"] == "1"
    assert nacro["Median days to respond"] == "[c]"
    assert view.rows[1][0] == "Not allocated"
    assert [c.text for c in view.rows[1][1]] == ["[x]"] * 4


def test_every_table_has_a_unique_id_and_every_chart_names_one_of_its_columns():
    ids = [t.id for p in PAGES for t in p.tables]
    assert len(ids) == len(set(ids))
    for page in PAGES:
        for table in page.tables:
            if table.chart:
                assert table.chart.column in {c.key for c in table.columns}
    assert OVERVIEW.path == "/" and PROVIDERS.path == "/providers"


def test_a_chart_escapes_its_labels_and_draws_no_bar_for_a_hidden_value():
    svg = charts.horizontal_bars("x", "T <1>", "D", [charts.Bar("<b>", 5), charts.Bar("y", None, "[c]")])
    assert "<b>" not in svg.replace("<b>", "", 0) or "&lt;b&gt;" in svg
    assert svg.count("<rect") == 1


# --- sign-in -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [("/providers?area=E08000029", "/providers?area=E08000029"), ("https://evil.example/", "/"),
     ("//evil.example", "/"), ("/\\evil", "/"), (None, "/"), ("providers", "/")],
)
def test_after_sign_in_only_a_path_on_this_site(raw, expected):
    assert safe_next(raw) == expected


def settings(**values) -> DashboardSettings:
    return DashboardSettings(jwt_secret=SECRET, **values)


def test_roles_and_areas_come_from_the_configured_claims():
    s = settings(oidc_roles_claim="groups", oidc_areas_claim="gss")
    assert claims_to_user({"sub": "u1", "groups": ["partnership"], "gss": "E08000029 E08000026"}, s) == (
        "u1", ["partnership"], ["E08000029", "E08000026"],
    )
    assert claims_to_user({"sub": "u2", "groups": "admin"}, s) == ("u2", ["admin"], None)
    with pytest.raises(PageError):
        claims_to_user({"groups": ["admin"]}, s)


def test_production_refuses_a_missing_or_default_session_secret_and_has_no_development_sign_in():
    with pytest.raises(ValueError, match="SESSION_SECRET"):
        settings(environment="production")
    with pytest.raises(ValueError, match="SESSION_SECRET"):
        settings(environment="production", session_secret="change-me")
    production = settings(environment="production", session_secret=SECRET,
                          public_url="https://insights.example")
    assert not production.development_sign_in and production.secure_cookie
    development = settings(environment="development")
    assert development.development_sign_in and not development.secure_cookie
    assert development.session_secret  # a random one per process
