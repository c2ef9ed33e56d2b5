"""MMS handler service for the benchmark peer (runs inside the MMS Python worker).

Built the way the AWS framework toolkits build theirs (sagemaker-pytorch-inference's
``handler_service.py``): a ``DefaultHandlerService`` around the toolkit ``Transformer`` with a
default inference handler, and a module-level ``handle(data, context)`` that MMS calls.
``sagemaker_inference.default_handler_service`` itself defines no ``handle`` function, so every
toolkit ships a module like this one.

The default handler mirrors sagemaker-pytorch-inference 2.0.x defaults: ``model.pt`` loaded
with ``torch.jit.load``, the body decoded by the toolkit decoder into a float tensor, the model
called under ``torch.no_grad()``, the output encoded by the toolkit encoder. A user module
(``code/inference.py``) overrides any of those hooks, as in the toolkit.
"""
from __future__ import absolute_import

import os

from sagemaker_inference import content_types, decoder, default_inference_handler, encoder, utils
from sagemaker_inference.default_handler_service import DefaultHandlerService
from sagemaker_inference.transformer import Transformer


class DefaultPytorchStyleInferenceHandler(default_inference_handler.DefaultInferenceHandler):
    def default_model_fn(self, model_dir, context=None):
        import torch

        path = os.path.join(model_dir, "model.pt")
        if not os.path.exists(path):
            raise FileNotFoundError("Failed to load model with default model_fn: missing file model.pt")
        model = torch.jit.load(path, map_location=torch.device("cpu"))
        model.eval()
        return model

    def default_input_fn(self, input_data, content_type, context=None):
        import torch

        np_array = decoder.decode(input_data, content_type)
        if content_type in content_types.UTF8_TYPES:
            return torch.FloatTensor(np_array)
        return torch.from_numpy(np_array)

    def default_predict_fn(self, data, model, context=None):
        import torch

        with torch.no_grad():
            return model(data)

    def default_output_fn(self, prediction, accept, context=None):
        import torch

        if isinstance(prediction, torch.Tensor):
            prediction = prediction.detach().cpu().numpy().tolist()
        for content_type in utils.parse_accept(accept):
            if content_type in encoder.SUPPORTED_CONTENT_TYPES:
                encoded = encoder.encode(prediction, content_type)
                if content_type == content_types.CSV:
                    encoded = encoded.encode("utf-8")
                return encoded
        raise Exception("unsupported accept: %s" % accept)


class HandlerService(DefaultHandlerService):
    def __init__(self):
        super().__init__(transformer=Transformer(default_inference_handler=DefaultPytorchStyleInferenceHandler()))


_service = HandlerService()


def handle(data, context):
    if not _service._service._initialized:  # noqa: SLF001 - same pattern as the AWS toolkits
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
