"""edgedistill: turn a large trained PyTorch model into a small, fast one, and prove it on the shipped file."""

import time as _time

__version__ = "0.1.0"

# when this process started using edgedistill: a run's summary reports the invocation's wall time from here,
# imports and data loading included, not only the stages' own seconds
STARTED = _time.monotonic()
