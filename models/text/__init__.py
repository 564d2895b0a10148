"""Text in, vectors and safe text out: embedders and PII redaction.

Public names are re-exported from :mod:`dialin.models`.
"""
