"""Use cases of the cohorts service: load, decide (pure domain), save and write the outbox, in
the caller's transaction. Services never commit; the request's session (or the worker's
transaction) does. The offence import is the exception that proves it: each batch is its
own unit of work, so it takes the sessionmaker.

One module per family of use cases; every public name is importable from here
(`from cohorts import service; service.run_selection(...)`).
"""

from cohorts.service.members import (
    adopt_member,
    deselect_member,
    list_members,
    move_member,
    note_need_activity,
    read_member,
    review_due_members,
    suggestions,
)
from cohorts.service.nominals import (
    add_offences,
    assess_nominal,
    list_offences,
    read_nominal,
    upsert_nominal,
    visible_nominal,
)
from cohorts.service.offence_import import (
    EmptyBody,
    ParsedImport,
    get_import,
    import_arriving,
    load_import,
    parse_arriving,
    parse_offence_csv,
    parse_offence_stream,
    run_import,
    spool_body,
    start_import,
)
from cohorts.service.policies import policy_for, policy_view, read_policy, replace_policy
from cohorts.service.selection_runs import list_runs, read_run, run_selection
from cohorts.service.subject_access import subject_access

__all__ = [
    "EmptyBody",
    "ParsedImport",
    "add_offences",
    "adopt_member",
    "assess_nominal",
    "deselect_member",
    "get_import",
    "import_arriving",
    "list_members",
    "list_offences",
    "list_runs",
    "load_import",
    "move_member",
    "note_need_activity",
    "parse_arriving",
    "parse_offence_csv",
    "parse_offence_stream",
    "policy_for",
    "policy_view",
    "read_member",
    "read_nominal",
    "read_policy",
    "read_run",
    "replace_policy",
    "review_due_members",
    "run_import",
    "run_selection",
    "spool_body",
    "start_import",
    "subject_access",
    "suggestions",
    "upsert_nominal",
    "visible_nominal",
]
