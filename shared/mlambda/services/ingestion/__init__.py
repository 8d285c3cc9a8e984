"""Event ingestion: online features, tracking, the archive and point-in-time training frames."""
