"""How images are compressed and what a compressed file looks like: JPEG at a chosen quality
(``jpeg``), JPEG files as byte or bit sequences for a model (``jpeg_bytes``) and video codecs
(``video``)."""
