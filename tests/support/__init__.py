"""What the tests, the end-to-end tests and the benchmarks share; never shipped in the wheel.

- `fake_api`: the fake Anthropic API on loopback (messages, token endpoint, accounts with
  token families, faults), built on the package's `loopback.LoopbackAPI`.
- `sandbox`: a throwaway HOME with slot files and the live link, a state dir, and the env our
  CLI and hooks run in; running them (`run`, `hook`), the manager and slot store in process;
  variants for the CLI, the gptme plugin and usage scripts.
- `credentials`: synthetic credential files, slots, the live link, and what Claude Code does
  to them (refresh, `/login`).
- `usage`: the usage endpoint's answer, `UsageSnapshot`s and policy views, a settable clock.
- `storm`, `reliability`: the many-process storm and the no-login-lost checks.
"""
