"""The `xmr` command: one entry point dispatching to each package's own entry function."""
