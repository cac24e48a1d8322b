"""Reconciliation: drift detection and status computation (pure), and what triggers a reconcile (thin)."""
