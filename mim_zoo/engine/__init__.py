"""The engine tier: what runs training around the model core (data pipeline, hooks, config preparation)."""
