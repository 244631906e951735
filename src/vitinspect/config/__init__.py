"""params.yaml: its schema, defaults and ranges, read and validated once."""
