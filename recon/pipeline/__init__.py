"""End-to-end pipelines that chain stages (and may import ``render`` / ``viewer`` lazily)."""
