"""Query layer: turns requests into shard calls and merges their partial answers."""
