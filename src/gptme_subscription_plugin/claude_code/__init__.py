"""Claude Code surface: hook entry points, the settings installer, statusline, doctor."""
