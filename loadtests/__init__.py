"""Load tests (Locust scenarios) and performance benchmarks that print measured numbers."""
