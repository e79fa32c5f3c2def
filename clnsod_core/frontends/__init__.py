"""Front-ends over the replacement API: the clnsod command line, the editor plugins' bridge and
the Ray engine of ``clnsod batch``."""
