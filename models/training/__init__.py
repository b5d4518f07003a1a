"""The offline trainer: configs, the training loop, and `xmr train`."""
