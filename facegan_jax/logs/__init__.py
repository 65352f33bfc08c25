"""What a run records: metrics.jsonl, TensorBoard events, sample grids and loss plots, and the GAN
health flags."""
