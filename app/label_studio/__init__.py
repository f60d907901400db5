"""Label Studio's ML-backend protocol against a boxal project (docs/LABEL_STUDIO.md)."""
