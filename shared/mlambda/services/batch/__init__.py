"""Batch prediction: planning a file into chunks, scoring a chunk, job bookkeeping."""
