"""The image's `SAGEMAKER_SERVING_MODULE=smserve.serving:main` (images.md §3).

SageMaker tooling names an image's serving entry point as module:function; it must resolve to the same thing
`serve` runs, so nothing that follows the variable ends up in a different server.
"""

from .cli import serve_entry as main

__all__ = ["main"]
