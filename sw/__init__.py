"""Software side: the bit-exact integer golden model, datasets, encoders and training."""
