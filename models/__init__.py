"""All torch code: backbones, heads, losses, methods, training, evaluation, inference."""
