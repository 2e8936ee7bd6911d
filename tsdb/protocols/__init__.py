"""Wire formats: pure functions turning bytes into Batches and results into bytes (no engine import)."""
