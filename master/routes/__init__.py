"""The master's blueprints: health and docs, nodes, models and their policy, cluster and
events."""
