"""The synthetic tier: generated data for tests, benchmarks, the tiny configs and the quickstart."""
