"""Live per-target health: outcome classification, windows, EWMA, stores."""
