"""Photo files in and out: decoding with orientation and colour profile, guarded sizes, output formats."""
