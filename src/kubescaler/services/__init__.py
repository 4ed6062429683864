"""Use cases: each one function that does the work an entrypoint asks for."""
