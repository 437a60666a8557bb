"""The pure domain of referrals: values in, decisions, history and events out.

No database, broker, HTTP, clock or environment here: every function takes `now` (an aware
datetime) and the ids it needs. One module per concept: `referral` (the aggregate and its
history), `submission` (what probation sends and its rules), `withdrawal`, `events` (what a
decision publishes), `need_lifecycle` (the need state machine driven by providers' events).
"""
