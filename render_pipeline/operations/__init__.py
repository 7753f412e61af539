"""Operator procedures that act on the whole stack: pause and resume, health, backup and restore."""
