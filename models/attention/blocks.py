"""Self-attention over a modality's tokens and the cross-attention pair scorer.

Kept small on purpose (one layer, a few heads, 128-256 dims): it trains on frozen features, on
a CPU, in the same loop as the methods without attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttentionBlock(nn.Module):
    """Project tokens, one pre-norm self-attention layer, then attention-pool them.

    Returns the contextualised tokens (for cross-attention) and a pooled summary whose pooling
    query is the caller's global vector (the pooled-feature embedding), so the summary is what
    the global view asks of the regions or words.
    """

    def __init__(
        self, dim_in: int, dim: int, query_dim: int, heads: int = 2, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.inp = nn.Sequential(nn.LayerNorm(dim_in), nn.Linear(dim_in, dim))
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim, dim),
        )
        self.query = nn.Linear(query_dim, dim)

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor | None, query: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.inp(tokens)
        pad = None if mask is None else ~mask
        h = self.norm(x)
        x = x + self.attn(h, h, h, key_padding_mask=pad, need_weights=False)[0]
        x = x + self.ffn(x)
        logits = torch.einsum("ntd,nd->nt", x, self.query(query)) / x.shape[-1] ** 0.5
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        pooled = torch.einsum("nt,ntd->nd", logits.softmax(dim=1), x)
        return x, pooled


def cross_attention_scores(
    words: torch.Tensor, word_mask: torch.Tensor, regions: torch.Tensor, smooth: float = 9.0
) -> torch.Tensor:
    """SCAN (Lee et al., ECCV 2018) in both directions, for every (text, image) pair.

    words (nt, T, d) with word_mask (nt, T); regions (ni, R, d). Text-to-image: each word
    attends to the regions, scored by the cosine of the word and its attended region vector,
    averaged over words; image-to-text: each region attends to the words, likewise. Returns
    (nt, ni), the mean of the two directions.

    With unit words and regions, cos(w, sum_r a_r r) = sum_r a_r cos(w, r) / |sum_r a_r r| and
    |sum_r a_r r|^2 = a^T G a with G the regions' Gram matrix, so nothing of size
    (nt, ni, T, d) is ever built: everything stays (nt, ni, T, R).
    """
    w = F.normalize(words, dim=-1)
    r = F.normalize(regions, dim=-1)
    cos = torch.einsum("atd,brd->abtr", w, r)  # (nt, ni, T, R)
    valid = word_mask[:, None, :, None]
    # words attend to regions
    attn = (smooth * cos).softmax(dim=-1)
    dot = (attn * cos).sum(-1)  # (nt, ni, T)
    sq = torch.einsum("abtr,brs,abts->abt", attn, r @ r.transpose(1, 2), attn)
    t2i = (dot / sq.clamp_min(1e-8).sqrt() * word_mask[:, None]).sum(-1)
    t2i = t2i / word_mask.sum(-1, keepdim=True).clamp_min(1)
    # regions attend to words (padding words get no attention)
    attn = (smooth * cos).masked_fill(~valid, float("-inf")).softmax(dim=2)
    dot = (attn * cos).sum(2)  # (nt, ni, R)
    sq = torch.einsum("abtr,ats,absr->abr", attn, w @ w.transpose(1, 2), attn)
    i2t = (dot / sq.clamp_min(1e-8).sqrt()).mean(-1)
    return (t2i + i2t) / 2
