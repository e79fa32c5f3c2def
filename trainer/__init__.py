"""Training and fine-tuning of CLN-SOD (``clnsod train``)."""
