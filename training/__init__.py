"""Training, evaluation bookkeeping and publishing of rvqgan models."""
