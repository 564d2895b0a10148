"""Text in, vectors and safe text out: embedders, PII redaction, language and keywords.

``_embedders`` (text to vectors), ``_pii`` (redaction before text leaves the process),
``_language`` (the one CJK character class and English-or-Chinese rule), ``_keywords``
(the action lexicons of "action-objective" labels and the keyword tokenizers).

Public names are re-exported from :mod:`dialin.models`.
"""
