"""New sky to composite: preset skies, sky placement, foreground harmonisation and editor layers."""
