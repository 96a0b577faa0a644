"""Distillation objectives: logit MSE (Tang et al. 2019, eq. 3), temperature KL (Hinton et al. 2015), hard-label mix."""
