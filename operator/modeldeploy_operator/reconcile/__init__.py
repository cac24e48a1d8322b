"""Reconciliation: drift detection and status computation (pure), and the kopf handlers (thin) that use them."""
