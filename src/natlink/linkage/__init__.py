"""Linking token records into persons: settings, training, model store, blocking, scoring, clustering, the engines, person ids, incremental reruns and the link run (see docs/architecture.md)."""
