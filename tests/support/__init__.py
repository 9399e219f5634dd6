"""What the tests, the end-to-end tests and the benchmarks share; never shipped in the wheel.

- `fake_api`: the fake Anthropic API on loopback (messages, token endpoint, accounts with
  token families, faults), built on the package's `loopback.LoopbackAPI`.
- `credentials`: synthetic credential files, slots, the live link, and what Claude Code does
  to them (refresh, `/login`).
- `storm`, `reliability`: the many-process storm and the no-login-lost checks.
"""
