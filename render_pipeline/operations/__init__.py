"""Operator procedures that act on the whole stack: pause and resume, backup and restore."""
