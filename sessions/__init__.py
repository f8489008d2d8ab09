"""Issues, sessions and their state machine, provider jobs, the reconciler and the JSON API."""
