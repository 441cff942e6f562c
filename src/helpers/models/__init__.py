"""Model architectures of the chapters, one module per architecture."""
