"""Index backends: the database of resources, tags, metadata, attachments and logs."""
