"""Video sky replacement: containers (PyAV), camera motion, a temporally stable matte, the pipeline."""
