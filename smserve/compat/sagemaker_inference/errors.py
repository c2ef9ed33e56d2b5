"""The toolkit's exceptions. smserve maps them by their attributes and class name, not identity, so these and
the real toolkit's behave alike: `status_code` is the HTTP status, UnsupportedFormatError is 415 from input
handling and 406 from output handling."""

from smserve import errors as _smserve_errors


class UnsupportedFormatError(_smserve_errors.UnsupportedFormatError):
    """A content type that a decoder or encoder cannot handle."""

    def __init__(self, content_type, **kwargs):
        super().__init__(content_type)


class BaseInferenceToolkitError(Exception):
    """An error with the HTTP status to answer (`status_code`), the message and the phrase."""

    def __init__(self, status_code, message, phrase):
        self.status_code = status_code
        self.message = message
        self.phrase = phrase
        super().__init__(status_code, message, phrase)


class GenericInferenceToolkitError(BaseInferenceToolkitError):
    """BaseInferenceToolkitError whose message defaults to "Invalid Request" and phrase to the message."""

    def __init__(self, status_code, message=None, phrase=None):
        message = message or "Invalid Request"
        super().__init__(status_code, message, phrase or message)
