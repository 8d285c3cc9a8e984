"""Online inference: routing, the model call, serving rules, prediction cache and prediction log."""
