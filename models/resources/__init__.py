"""Data files shipped with the package (Unicode emoji-test.txt)."""
