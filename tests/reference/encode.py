#!/usr/bin/env python3
"""Reference forward pass of the BERT-style encoders Yunzhi runs (bge, gte, e5 families),
written from the BERT paper and the Hugging Face config fields, on PyTorch (Debian's
python3-torch), in float64. No transformers package.

Input: a JSON job file
    {"cases": [{"reference": "bert.ref.safetensors", "inputs": [[101, 7, 102], ...],
                "type_ids": [[0, 0, 0], ...], "normalize": true, "score": false,
                "out": "emb.f32"}, ...]}
where each reference file is what the model writer's WriteEncoderModel writes: every weight as
float32 under its BertModel name, config.json text under the metadata key "config" and "cls" or
"mean" under "pooling". Each case writes one embedding per input ([len(inputs), hidden_size],
float32, row-major, little-endian) to "out". Every input runs alone (no padding), with positions
0..n-1 and the given token types ("type_ids" absent: all 0).

With "score": true the model is a cross-encoder (BertForSequenceClassification, num_labels 1:
the reference file also holds pooler.dense.* and classifier.*) and each case writes one float32
per input: classifier(tanh(pooler.dense(hidden state of [CLS]))), the raw logit.

Any failure exits non-zero: the calling test must fail, not skip.
"""
import json
import math
import sys

import torch

from forward import read_safetensors  # the same float32 reference files as the decoders


def layer_norm(x, w, b, eps):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def gelu(x):
    # The erf form BERT uses (hidden_act "gelu"), not the tanh approximation.
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def encode(w, cfg, pooling, tokens, types=None):
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    n_head = cfg["num_attention_heads"]
    d = cfg["hidden_size"]
    hd = d // n_head
    ids = torch.tensor(tokens, dtype=torch.long)
    n = len(tokens)
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:n]
         + w["embeddings.token_type_embeddings.weight"][
             torch.tensor(types if types else [0] * n, dtype=torch.long)])
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)

    def lin(name, h):
        return h @ w[name + ".weight"].T + w[name + ".bias"]

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q = lin(p + "attention.self.query", x).reshape(n, n_head, hd).transpose(0, 1)
        k = lin(p + "attention.self.key", x).reshape(n, n_head, hd).transpose(0, 1)
        v = lin(p + "attention.self.value", x).reshape(n, n_head, hd).transpose(0, 1)
        scores = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd), dim=-1)  # no mask
        a = (scores @ v).transpose(0, 1).reshape(n, d)
        x = layer_norm(x + lin(p + "attention.output.dense", a),
                       w[p + "attention.output.LayerNorm.weight"],
                       w[p + "attention.output.LayerNorm.bias"], eps)
        f = lin(p + "output.dense", gelu(lin(p + "intermediate.dense", x)))
        x = layer_norm(x + f, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"],
                       eps)
    if pooling == "score":
        pooled = torch.tanh(x[0] @ w["pooler.dense.weight"].T + w["pooler.dense.bias"])
        return pooled @ w["classifier.weight"].T + w["classifier.bias"]  # [1]
    if pooling == "cls":
        return x[0]
    if pooling == "mean":
        return x.mean(dim=0)
    raise ValueError(f"unknown pooling {pooling!r}")


def main():
    if len(sys.argv) != 2:
        print("usage: encode.py JOB.json", file=sys.stderr)
        sys.exit(2)
    with open(sys.argv[1]) as f:
        job = json.load(f)
    models = {}
    for case in job["cases"]:
        path = case["reference"]
        if path not in models:
            models[path] = read_safetensors(path)
        w, meta = models[path]
        cfg = json.loads(meta["config"])
        pooling = case.get("pooling", meta.get("pooling", "cls"))
        if case.get("score", False):
            pooling = "score"
        types = case.get("type_ids", [None] * len(case["inputs"]))
        rows = []
        for tokens, tt in zip(case["inputs"], types):
            e = encode(w, cfg, pooling, tokens, tt)
            if case.get("normalize", False):
                e = e / torch.clamp(torch.linalg.norm(e), min=1e-12)
            rows.append(e)
        out = torch.stack(rows).to(torch.float32).numpy()
        out.astype("<f4").tofile(case["out"])
    print(f"encode.py: {len(job['cases'])} cases OK")


if __name__ == "__main__":
    main()
