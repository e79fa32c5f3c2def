"""Weight files: the safe file format, the registry of published weights and verified downloads."""
