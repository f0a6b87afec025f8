"""Pure decisions over plain data: no I/O, no clock reads (callers pass `now`), no SDK imports."""
