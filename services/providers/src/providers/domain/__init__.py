"""The pure domain of providers: values in, decisions and events out.

No database, broker, HTTP, clock or environment here: every action takes `now`. One module per
concept: `catalogue` (services, pathways and eligibility, seeded from `catalogue.json`),
`routing` (eligibility and the routing rule), `provider_referral` (allocation, the state
machine, service levels and Duty to Refer), `working_days` (the calendar deadlines count in).
"""
