"""Tool modules of the folder plugin (gptme collects every public submodule)."""
