"""Repair jobs: what reconcile's drift gets (`follow_up`) and the repair steps (`job`)."""
