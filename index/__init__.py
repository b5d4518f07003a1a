"""The index layer: FAISS vector stores, SQLite metadata, manifests, generations and the batch
re-index job. numpy float32 in, int64 ids out; nothing here imports torch (the CLI loads the
encoder lazily, at the edge)."""
