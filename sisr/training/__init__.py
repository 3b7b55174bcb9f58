"""Training: profiles and configuration, the training skeleton for pixel and GAN losses,
the run-directory callbacks and the SRGAN model."""
