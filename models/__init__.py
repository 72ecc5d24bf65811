"""Rules, ML models, temporal validation, explanations and the model registry."""
