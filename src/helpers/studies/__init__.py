"""One module per chapter: its per-profile settings and the small runners its experiments call.

The reusable parts (models, data, metrics, codecs) live in their own modules; a study module
only wires them together the way its chapter needs.
"""
