"""Repository functions: one function per query, parameters only, no SQL built from strings."""
