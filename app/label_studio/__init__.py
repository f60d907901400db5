"""Label Studio's ML-backend protocol against a boxal project (README, "Label Studio")."""
