"""Rate cards, the append-only cost ledger and Cost per Issue analytics."""
