"""Spend control: budgets per org, pool and issue, forecasts, threshold alerts, enforcement.

The top layer: it reads the ledger (billing) and acts on sessions (sessions).
"""
