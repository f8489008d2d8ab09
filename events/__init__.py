"""Events out: the transactional outbox, signed webhooks and their delivery log.

The lowest layer above rensei: pools, sessions, billing and budgets write events here in the
same transaction as the change they describe (``events.outbox.emit``).
"""
