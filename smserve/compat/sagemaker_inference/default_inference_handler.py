"""DefaultInferenceHandler: the toolkit's base class for handler services, with its default hooks."""

from . import decoder, encoder, errors, utils


class DefaultInferenceHandler:
    """Subclasses override default_model_fn and default_predict_fn; input and output use decoder and encoder."""

    def default_model_fn(self, model_dir, context=None):
        raise NotImplementedError("Please provide a model_fn implementation. "
                                  "See documentation for model_fn at https://sagemaker.readthedocs.io/en/stable/")

    def default_input_fn(self, input_data, content_type, context=None):
        return decoder.decode(input_data, content_type)

    def default_predict_fn(self, data, model, context=None):
        raise NotImplementedError("Please provide a predict_fn implementation. "
                                  "See documentation for predict_fn at https://sagemaker.readthedocs.io/en/stable/")

    def default_output_fn(self, prediction, accept, context=None):
        """Encode as the first type of `accept` that the encoder supports."""
        for content_type in utils.parse_accept(accept):
            if content_type in encoder.SUPPORTED_CONTENT_TYPES:
                return encoder.encode(prediction, content_type), content_type
        raise errors.UnsupportedFormatError(accept)
