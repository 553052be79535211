"""Reference data files (CSV), read with importlib.resources so they also load from a zip (--py-files)."""
