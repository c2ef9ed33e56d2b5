"""decode(obj, content_type): request bytes or text to NumPy, by smserve's codecs (core.md §9).

JSON and CSV give the arrays the toolkit gives (np.array of the document; np.genfromtxt with per-column types);
NPY refuses pickled (object) arrays with 400 instead of unpickling them; NPZ gives a scipy sparse matrix for
scipy's sparse format (as the toolkit) and a dict of arrays for any other archive. Beyond the toolkit, JSON Lines
(application/jsonlines, alias application/x-jsonlines) decodes line by line, as the default input_fn does."""

from smserve import codecs as _codecs

from . import content_types, errors

_DECODERS = {
    content_types.JSON: _codecs.decode_json,
    content_types.CSV: _codecs.decode_csv,
    content_types.NPY: _codecs.decode_npy,
    content_types.NPZ: _codecs.decode_npz,
    _codecs.JSONLINES: _codecs.decode_jsonlines,
}


def decode(obj, content_type):
    """Decode `obj` (bytes or str) sent as `content_type`; UnsupportedFormatError for any other type."""
    decoder = _DECODERS.get(_codecs.media_type(content_type)[0] if content_type else None)
    if decoder is None:
        raise errors.UnsupportedFormatError(content_type)
    return decoder(obj)
