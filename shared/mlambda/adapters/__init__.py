"""The only code that talks to AWS: boto3 clients behind the ports the services use."""
