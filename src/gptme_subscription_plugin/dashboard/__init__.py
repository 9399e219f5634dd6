"""`gptme-subscription dashboard`: the fleet at a glance in a browser (the `dashboard` extra).

A surface like the CLI: it reads the core (the status snapshot, the turn registry, the event
log, the usage history and ledger) and never writes a slot itself; its two actions go through
the manager's `switch_to` and `heal`, as the CLI's do. Only this package imports FastAPI and
uvicorn, so the core and the hooks never pay for them.
"""
