"""The pure domain of cohorts: values in, decisions and events out.

No database, broker, HTTP, clock or environment here: every rule takes `as_of` or `now`. One
module per concept: `policy` (the per-area selection policy), `selection` (the prolific test,
the Recency/Frequency/Gravity score, candidacy, ranking and capacity), `membership` (panel
decisions, reviews and deselection suggestions), `offences` (checking nominals and offence
records), `dates` (the calendar arithmetic the rules rest on).
"""
