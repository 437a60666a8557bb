"""The insights dashboard: server-rendered GOV.UK pages over the figures (see routes.py)."""
