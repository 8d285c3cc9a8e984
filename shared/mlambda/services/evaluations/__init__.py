"""Human evaluation: samples scored by a version, verdicts from people, results published to the registry."""
