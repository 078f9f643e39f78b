"""The causal self-attention encoder of SASRec (Kang & McAuley 2018), as its authors define it.

Each block normalises its input and uses the normalised sequence as the attention query and as the
residual stream; keys and values read the block's raw input; the feed-forward network is two
width x width layers with a ReLU and dropout inside. Attention itself drops weights
(`attention_dropout`). Item embeddings are scaled by sqrt(width) and positions are learned, indexed
from the start of the window, so a window of K items always uses positions 0 .. K - 1. Sequences
are right-padded: with a causal mask a real position never attends to padding, and padded inputs
are zeroed before the first block.

`Encoder.encode` takes embedded inputs, so a model with more than one token per step (the Decision
Transformer, trainables/recsys/dt.py) runs the same blocks over its own token sequence.
"""

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F


@dataclasses.dataclass(frozen=True)
class EncoderShape:
    """The architecture fields a checkpoint must match."""

    n_items: int
    context_length: int
    layers: int
    heads: int
    width: int


class Dropout(nn.Module):
    """nn.Dropout's function with a mask drawn by torch.rand: on CPU, bernoulli_ makes dropout about
    a quarter of a SASRec epoch; a uniform draw compared with p takes half that time."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * (torch.rand_like(x) >= self.p) / (1 - self.p)


class Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.heads, self.attention_dropout = heads, attention_dropout
        self.ln_attention, self.ln_ffn = nn.LayerNorm(width, eps=1e-8), nn.LayerNorm(width, eps=1e-8)
        self.query, self.key_value = nn.Linear(width, width), nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        self.ffn = nn.Sequential(nn.Linear(width, width), nn.ReLU(), Dropout(dropout), nn.Linear(width, width))
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape

        def split_heads(t: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, H, T, C/H)
            return t.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

        normed = self.ln_attention(x)
        key, value = self.key_value(x).chunk(2, dim=-1)
        attended = F.scaled_dot_product_attention(
            split_heads(self.query(normed)),
            split_heads(key),
            split_heads(value),
            is_causal=True,
            dropout_p=self.attention_dropout if self.training else 0.0,
        )  # (B, H, T, C/H)
        x = normed + self.drop(self.out(attended.transpose(1, 2).reshape(batch, length, width)))
        return x + self.drop(self.ffn(self.ln_ffn(x)))


class Encoder(nn.Module):
    """Item sequences (B, T) -> hidden states (B, T, C); item ids 0 .. I - 1, padding = I."""

    def __init__(self, shape: EncoderShape, dropout: float, attention_dropout: float):
        super().__init__()
        self.shape = shape
        self.padding = shape.n_items
        self.item_emb = nn.Embedding(shape.n_items + 1, shape.width, padding_idx=shape.n_items)
        self.position_emb = nn.Embedding(shape.context_length, shape.width)
        self.drop = Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(shape.width, shape.heads, dropout, attention_dropout) for _ in range(shape.layers)
        )
        self.ln_final = nn.LayerNorm(shape.width, eps=1e-8)
        # Xavier-normal tables: with a tied output layer, N(0, 1) rows start the softmax at a loss
        # far above log(I); std ~ sqrt(2 / (I + C)) starts it near log(I).
        for table in (self.item_emb, self.position_emb):
            nn.init.xavier_normal_(table.weight)
        with torch.no_grad():
            self.item_emb.weight[self.padding].zero_()

    def set_dropout(self, dropout: float, attention_dropout: float) -> None:
        for module in self.modules():
            if isinstance(module, Dropout):
                module.p = dropout
            if isinstance(module, Block):
                module.attention_dropout = attention_dropout

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.encode(self.embed_items(items), items != self.padding)  # (B, T, C)

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        """(B, T) item ids -> (B, T, C) scaled item embeddings plus the positions 0 .. T - 1."""
        return self.item_emb(items) * self.shape.width**0.5 + self.position_emb.weight[: items.shape[1]]

    def encode(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) embedded inputs, real (B, T) False on padding -> (B, T, C) hidden states."""
        x = self.drop(x) * real.unsqueeze(-1)
        for block in self.blocks:
            x = block(x)
        return self.ln_final(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., I): the output layer is the item table itself (tied)."""
        return hidden @ self.item_emb.weight[: self.shape.n_items].T
