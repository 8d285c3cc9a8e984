"""mlambda's local cloud and CLI: runs template.yaml on one machine with no Docker and no AWS account.

Never imported by the shared layer or the functions; it imports them.
"""
