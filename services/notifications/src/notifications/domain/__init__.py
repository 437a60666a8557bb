"""The pure domain of notifications: values in, decisions out.

No database, broker, HTTP, clock or environment here. One module per concept: `intents` (who
is told what: an event becomes notification intents), `delivery` (the life of one delivery and
its retries), `subscriptions` (webhook subscriptions: patterns, who may subscribe, matching,
safe URLs, disabling), `templates` (the email of each notification kind), `webhooks` (Standard
Webhooks signing).
"""
