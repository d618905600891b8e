"""The project's benchmarks: ``python -m benchmarks QUESTION [--smoke] [options]`` (see README.md here)."""
