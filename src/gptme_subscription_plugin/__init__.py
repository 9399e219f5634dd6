"""Quota-aware rotation of Claude subscription credentials."""
