"""Per-account usage and cost from Claude Code's transcripts (`gptme-subscription usage`).

`transcript_lines` parses a transcript line into a usage record, `reader` reads only the new
lines of each transcript, `prices` turns tokens into list-price dollars, and `ledger` keeps it
all in SQLite and attributes every message to the account that served it.
"""
