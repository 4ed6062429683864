"""Plain structs and pure logic: no I/O below this line."""
