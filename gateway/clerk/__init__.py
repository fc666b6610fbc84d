"""The protocol core: Clerk's request authentication as pure functions (no I/O, no clock reads)."""
