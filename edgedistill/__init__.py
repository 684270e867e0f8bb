"""edgedistill: turn a large trained PyTorch model into a small, fast one, and prove it on the shipped file."""

__version__ = "0.1.0"
