"""Multi-agent plans: the model, validation, conflicts, and orchestration."""
