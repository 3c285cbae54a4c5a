"""Settings: base.py holds everything, read from environment variables;
dev.py (the embedded default), test.py and production.py adjust it."""
