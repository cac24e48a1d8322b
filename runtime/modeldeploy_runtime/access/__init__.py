"""Who may call the model: API keys, per-key limits and the audit log, applied to every route by one middleware."""
