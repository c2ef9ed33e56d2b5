"""smserve: SageMaker-compatible inference serving with one asyncio core and per-framework families."""

__version__ = "0.1.0"
