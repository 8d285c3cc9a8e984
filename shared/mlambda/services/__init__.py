"""The platform's logic: pure Python + numpy, talking to the world only through ports."""
