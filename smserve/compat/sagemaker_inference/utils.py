"""Helpers that toolkit-style scripts call."""

import re

CONTENT_TYPE_REGEX = re.compile("^[Cc]ontent-?[Tt]ype")


def read_file(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def write_file(path, data, mode="w"):
    with open(path, mode) as f:
        f.write(data)


def retrieve_content_type_header(request_property):
    """The Content-Type value of a header mapping, whatever its spelling (Content-Type, content-type, ContentType)."""
    for key in request_property:
        if CONTENT_TYPE_REGEX.match(key):
            return request_property[key]
    return None


def parse_accept(accept):
    """The media types of an Accept value, in order, without spaces (parameters are kept, as the toolkit does)."""
    return accept.replace(" ", "").split(",")


def remove_crlf(illegal_string):
    """`illegal_string` with CR and LF replaced by spaces (they cannot appear in a header value)."""
    return illegal_string.replace("\r", " ").replace("\n", " ")
