"""Front-ends over the replacement API: the clnsod command line and the editor plugins' bridge."""
