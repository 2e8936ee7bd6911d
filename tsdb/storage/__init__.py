"""Storage layer: samples in memory (chunks, series, label index, shards)."""
