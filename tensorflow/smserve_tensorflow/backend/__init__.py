"""The built-in TensorFlow Serving backend (spec tensorflow.md §2, §3, §9).

Used when no `tensorflow_model_server` binary is available: it loads SavedModels with the TensorFlow runtime and
answers the TF Serving REST API with the same statuses, JSON bodies, error texts and number text as the real
server, so the front cannot tell the two apart. Importing this package stays cheap; TensorFlow is imported only by
the modules that run models.
"""
