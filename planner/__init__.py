"""effft's planner: pure (no torch, no ray, no database, no clock). Data in, plan out."""
