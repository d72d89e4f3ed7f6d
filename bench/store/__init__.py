"""The row store: append-only results.jsonl under a lock, and per-evaluation claims."""
