"""Models: XGBoost fitting and scoring, reason codes, the assessment scorecard and the registry."""
