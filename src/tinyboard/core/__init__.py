"""Domain logic shared by every transport: models, device tokens, payload parsing, pipeline."""
