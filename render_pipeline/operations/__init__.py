"""Operator procedures that act on the whole stack: backup and restore."""
