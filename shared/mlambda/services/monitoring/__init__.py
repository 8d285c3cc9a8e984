"""Monitoring: reference profiles, drift, data quality, model quality, A/B readout, reports."""
