"""Networkx topologies, mixing weights and failure/churn schedules. Pure, seeded."""
