"""Step 2, the data foundation: ``data`` (load, split, clean, bias, scale) and ``quality``
(profile and quality checks)."""
