"""Photo to sky: the inference API, the full-resolution matte, label refinement and mask metrics."""
