"""Quota data: one normalized snapshot, several sources, one shared cache."""
