"""`sagemaker_inference` inside smserve images: the parts of AWS's sagemaker-inference toolkit that user scripts
import (core.md §7.7), with smserve's safety rules (decoding never unpickles).

Scripts written for AWS's containers keep working unchanged:

    from sagemaker_inference import content_types, decoder, encoder, errors

Answers match the toolkit's wherever the toolkit succeeds; where it would fail with a 500 (a pickled NPY, a ragged
JSON array), the client gets smserve's 4xx instead. A user requirement that installs the real toolkit wins on the
path; its exceptions still map to the same statuses (status propagation is duck-typed).
"""
