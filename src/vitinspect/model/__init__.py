"""The Vision Transformer: building and loading it, fine-tuning strategies, training, pretraining, prediction."""
