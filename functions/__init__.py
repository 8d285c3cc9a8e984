"""The Lambda functions: one folder each, a thin ``app.handler`` over a layer service."""
