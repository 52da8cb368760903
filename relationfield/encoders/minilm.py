"""all-MiniLM-L6-v2 on torch, tokenizers and safetensors alone: the offline text encoder in about a second.

sentence-transformers costs 10-13 s to import on a 2-core CPU (transformers, scikit-learn, torch._dynamo,
comet_ml), and the offline encoder is loaded by every labelling, export and query command. The model is a
plain BERT encoder (6 layers, 384 wide, 12 heads, GELU, post-LayerNorm) followed by mean pooling over the
tokens and L2 normalisation (its ``modules.json``: Transformer, Pooling with ``pooling_mode_mean_tokens``,
Normalize), and texts are cut at ``max_seq_length`` (``sentence_bert_config.json``) tokens, so this module
builds that network from the model's ``config.json``, loads ``model.safetensors`` and tokenises with the
model's ``tokenizer.json``, the files sentence-transformers itself reads. It also forms its batches, adds the
embeddings, runs attention (torch's fused kernel, transformers' default for BERT) and normalises as
sentence-transformers and the old back end did, so the embeddings are the same bits (tests/test_encoders.py)
and label stores written before this back end existed are unchanged.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer
from torch import Tensor, nn

from relationfield.encoders.base import DEFAULT_BATCH_SIZE, TextEncoder

__all__ = ["BertEncoder", "MiniLMTextEncoder", "load_minilm"]


class _Layer(nn.Module):
    """One BERT layer: self-attention and a feed-forward block, each with a residual and a LayerNorm."""

    def __init__(self, width: int, heads: int, inner: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.attention_out = nn.Linear(width, width)
        self.attention_norm = nn.LayerNorm(width, eps=eps)
        self.inner = nn.Linear(width, inner)
        self.out = nn.Linear(inner, width)
        self.out_norm = nn.LayerNorm(width, eps=eps)

    def forward(self, x: Tensor, bias: Tensor | None) -> Tensor:
        batch, length, width = x.shape

        def split(t: Tensor) -> Tensor:
            return t.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        # torch's fused attention, as transformers' default ("sdpa") BERT runs it: the same bits
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=(width // self.heads) ** -0.5)
        x = self.attention_norm(self.attention_out(attended.transpose(1, 2).reshape(batch, length, width)) + x)
        return self.out_norm(self.out(F.gelu(self.inner(x))) + x)


class BertEncoder(nn.Module):
    """A BERT encoder (token, position and segment embeddings, then the layers) built from a ``config.json``."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        width, eps = int(config["hidden_size"]), float(config["layer_norm_eps"])
        if (
            config.get("hidden_act", "gelu") != "gelu"
            or config.get("position_embedding_type", "absolute") != "absolute"
        ):
            raise ValueError("only BERT models with GELU and absolute positions are supported")
        self.words = nn.Embedding(int(config["vocab_size"]), width)
        self.positions = nn.Embedding(int(config["max_position_embeddings"]), width)
        self.segments = nn.Embedding(int(config["type_vocab_size"]), width)
        self.norm = nn.LayerNorm(width, eps=eps)
        self.layers = nn.ModuleList(
            _Layer(width, int(config["num_attention_heads"]), int(config["intermediate_size"]), eps)
            for _ in range(int(config["num_hidden_layers"]))
        )

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Token features ``[B, L, width]`` of token ids ``[B, L]`` (``mask`` 1 for real tokens, 0 for padding)."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.norm(self.words(ids) + self.segments(torch.zeros_like(ids)) + self.positions(positions)[None])
        bias = None  # no padding: no mask (transformers passes none either)
        if not bool(mask.all()):
            bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
            bias = bias.expand(-1, 1, ids.shape[1], -1)
        for layer in self.layers:
            x = layer(x, bias)
        return x

    def load_bert_weights(self, state: dict[str, Tensor]) -> None:
        """Load a Hugging Face ``BertModel`` state dict (its names, with or without the ``bert.`` prefix)."""
        state = {key.removeprefix("bert."): value for key, value in state.items()}
        names = {
            "words.weight": "embeddings.word_embeddings.weight",
            "positions.weight": "embeddings.position_embeddings.weight",
            "segments.weight": "embeddings.token_type_embeddings.weight",
            "norm.weight": "embeddings.LayerNorm.weight",
            "norm.bias": "embeddings.LayerNorm.bias",
        }
        parts = {
            "query": "attention.self.query",
            "key": "attention.self.key",
            "value": "attention.self.value",
            "attention_out": "attention.output.dense",
            "attention_norm": "attention.output.LayerNorm",
            "inner": "intermediate.dense",
            "out": "output.dense",
            "out_norm": "output.LayerNorm",
        }
        for index in range(len(self.layers)):
            for ours, theirs in parts.items():
                for kind in ("weight", "bias"):
                    names[f"layers.{index}.{ours}.{kind}"] = f"encoder.layer.{index}.{theirs}.{kind}"
        missing = [theirs for theirs in names.values() if theirs not in state]
        if missing:
            raise ValueError(f"the checkpoint lacks {len(missing)} BERT weights, e.g. {missing[0]}")
        self.load_state_dict({ours: state[theirs] for ours, theirs in names.items()})


class MiniLMTextEncoder(TextEncoder):
    """Mean-pooled, L2-normalised BERT embeddings of texts (all-MiniLM-L6-v2 and models like it)."""

    def __init__(
        self, name: str, model: BertEncoder, tokenizer: Tokenizer, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        self.name = name
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._lock = threading.Lock()  # one forward pass at a time: callers may share the encoder across threads
        self.dim = int(self.encode(["dimension probe"]).shape[1])

    def _encode_unique(self, texts: list[str]) -> Tensor:
        device = next(self.model.parameters()).device
        # Batches of texts sorted longest first, as sentence-transformers forms them: the padding, and so the
        # bits of every embedding, are the same as when sentence-transformers encoded the label stores.
        order = np.argsort([-len(text) for text in texts])
        rows = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                encoded = self.tokenizer.encode_batch([texts[int(i)] for i in order[start : start + self.batch_size]])
                ids = torch.tensor([e.ids for e in encoded], device=device)
                mask = torch.tensor([e.attention_mask for e in encoded], device=device)
                tokens = self.model(ids, mask)
                weights = mask[..., None].expand(tokens.shape).to(tokens.dtype)
                rows.append(F.normalize((tokens * weights).sum(1) / weights.sum(1).clamp_min(1e-9), dim=-1))
        embeddings = torch.empty(len(texts), rows[0].shape[1])
        embeddings[torch.from_numpy(order)] = torch.cat(rows).to("cpu", torch.float32)
        return F.normalize(embeddings, dim=-1)  # a second time, as TextEncoder did after sentence-transformers


def load_minilm(name: str, path: Path, device: str = "cpu") -> MiniLMTextEncoder:
    """The sentence-transformers model in directory ``path`` (a BERT with mean pooling) as a text encoder.

    Raises:
        ValueError, OSError: a file is missing or is not such a model.
    """
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((path / "modules.json").read_text())]
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    if modules[:2] != ["Transformer", "Pooling"] or not pooling.get("pooling_mode_mean_tokens"):
        raise ValueError(f"{path} is not a mean-pooled transformer (modules {modules})")
    config = json.loads((path / "config.json").read_text())
    max_length = int(json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"])
    model = BertEncoder(config)
    model.load_bert_weights(load_file(str(path / "model.safetensors")))
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=min(max_length, int(config["max_position_embeddings"])))
    tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)))
    return MiniLMTextEncoder(name, model.to(device), tokenizer)
